#include "forward/side.h"

namespace g4::forward {

Side hf_side(const std::string& text_prefix) {
  Side s;
  s.label = "HF";
  s.embed = "embed_tokens.weight";
  s.final_norm = "norm.weight";
  s.ple_table = "embed_tokens_per_layer.weight";
  s.ple_projection = "per_layer_model_projection.weight";
  s.ple_norm = "per_layer_projection_norm.weight";
  s.layer_prefix = "layers.";
  s.input_norm = "input_layernorm.weight";
  s.post_attention_norm = "post_attention_layernorm.weight";
  s.q_proj = "self_attn.q_proj.weight";
  s.k_proj = "self_attn.k_proj.weight";
  s.v_proj = "self_attn.v_proj.weight";
  s.q_norm = "self_attn.q_norm.weight";
  s.k_norm = "self_attn.k_norm.weight";
  s.o_proj = "self_attn.o_proj.weight";
  const MlpNames mlp{"pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight", "", "mlp.gate_proj.weight",
                     "mlp.up_proj.weight", "mlp.down_proj.weight"};
  s.dense = mlp;
  s.shared = mlp;
  s.shared.post_norm = "post_feedforward_layernorm_1.weight";
  s.moe = {"router.scale", "router.proj.weight", "router.per_expert_scale", "pre_feedforward_layernorm_2.weight",
           "post_feedforward_layernorm_2.weight", "experts.gate_up_proj", "experts.down_proj", "post_feedforward_layernorm.weight"};
  s.ple_gate = "per_layer_input_gate.weight";
  s.ple_layer_projection = "per_layer_projection.weight";
  s.ple_post_norm = "post_per_layer_input_norm.weight";
  s.layer_scalar = "layer_scalar";
  s.adapter_prefix = text_prefix;
  s.adapters = AdapterStyle::kPeft;
  return s;
}

Side megatron_side(const gemma4::TextConfig& cfg) {
  const bool te = cfg.enable_moe_block;  // the 26B-A4B provider builds TE modules with fused norms
  Side s;
  s.label = "Megatron";
  s.embed = "embedding.word_embeddings.weight";
  s.final_norm = "decoder.final_layernorm.weight";
  s.ple_table = "per_layer_embedding.weight";
  s.ple_projection = "per_layer_model_proj.weight";
  s.ple_norm = "per_layer_proj_norm.weight";
  s.layer_prefix = "decoder.layers.";
  s.input_norm = te ? "self_attention.linear_qkv.layer_norm_weight" : "input_layernorm.weight";
  s.post_attention_norm = te ? "self_attention.linear_proj.post_layernorm.weight" : "post_self_attn_layernorm.weight";
  s.fused_qkv = "self_attention.linear_qkv.weight";
  s.q_norm = "self_attention.q_layernorm.weight";
  s.k_norm = "self_attention.k_layernorm.weight";
  s.o_proj = "self_attention.linear_proj.weight";
  s.dense = {"pre_mlp_layernorm.weight", "post_mlp_layernorm.weight", "mlp.linear_fc1.weight", "", "", "mlp.linear_fc2.weight"};
  s.shared = {"pre_shared_expert_layernorm.weight", "mlp.post_shared_expert_layernorm.weight", "mlp.shared_experts.linear_fc1.weight",
              "", "", "mlp.shared_experts.linear_fc2.weight"};
  s.moe = {"mlp.router.scale", "mlp.router.weight", "mlp.router.per_expert_scale", "pre_mlp_layernorm.weight",
           "mlp.post_moe_layernorm.weight", "mlp.experts.experts.linear_fc1.weight", "mlp.experts.experts.linear_fc2.weight",
           "post_ffn_layernorm.weight"};
  s.ple_gate = "per_layer_input_gate.weight";
  s.ple_layer_projection = "per_layer_projection.weight";
  s.ple_post_norm = "post_per_layer_input_norm.weight";
  s.layer_scalar = "layer_scalar";
  s.adapter_prefix = "";
  s.adapters = AdapterStyle::kMegatronBridge;
  // TERowParallelLinearLayerNorm returns post_norm(W_o·o); MB's LoRALinear adds its adapter to that output.
  s.proj_adapter_after_post_norm = te;
  return s;
}

}  // namespace g4::forward
