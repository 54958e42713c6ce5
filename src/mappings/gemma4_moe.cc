// Megatron-Bridge's _moe_mapping_registry (Gemma4Bridge, 26B-A4B) at NVIDIA-NeMo/Megatron-Bridge@067f987df,
// after the fusions were removed (44561351a): every rule is a pure reshuffle.
#include "mappings/mapping_table.h"

namespace g4::mappings {

const FamilyTable& moe_text_table() {
  using T = Transform;
  static const FamilyTable kTable{
      "moe",
      {
          {.megatron = "embedding.word_embeddings.weight", .hf = {"embed_tokens.weight"}, .vocab_rows = true},
          {"decoder.final_layernorm.weight", {"norm.weight"}},
          {.megatron = "output_layer.weight", .hf = {"lm_head.weight"}, .when = When::kUntied, .vocab_rows = true},
      },
      {
          // The input RMSNorm is fused into TE's LayerNormColumnParallelLinear.
          {"decoder.layers.{l}.self_attention.linear_qkv.layer_norm_weight", {"layers.{l}.input_layernorm.weight"}},
          {"decoder.layers.{l}.self_attention.linear_qkv.weight",
           {"layers.{l}.self_attn.q_proj.weight", "layers.{l}.self_attn.k_proj.weight", "layers.{l}.self_attn.v_proj.weight"},
           T::kQkv},
          {"decoder.layers.{l}.self_attention.q_layernorm.weight", {"layers.{l}.self_attn.q_norm.weight"}},
          {"decoder.layers.{l}.self_attention.k_layernorm.weight", {"layers.{l}.self_attn.k_norm.weight"}},
          {"decoder.layers.{l}.self_attention.linear_proj.weight", {"layers.{l}.self_attn.o_proj.weight"}},
          // TERowParallelLinearLayerNorm: the post-attention norm lives on linear_proj.
          {"decoder.layers.{l}.self_attention.linear_proj.post_layernorm.weight", {"layers.{l}.post_attention_layernorm.weight"}},
          // Routed experts take pre_feedforward_layernorm_2; the dense MLP runs as the shared expert.
          {"decoder.layers.{l}.pre_mlp_layernorm.weight", {"layers.{l}.pre_feedforward_layernorm_2.weight"}},
          {"decoder.layers.{l}.pre_shared_expert_layernorm.weight", {"layers.{l}.pre_feedforward_layernorm.weight"}},
          {"decoder.layers.{l}.mlp.shared_experts.linear_fc1.weight",
           {"layers.{l}.mlp.gate_proj.weight", "layers.{l}.mlp.up_proj.weight"}, T::kGateUp},
          {"decoder.layers.{l}.mlp.shared_experts.linear_fc2.weight", {"layers.{l}.mlp.down_proj.weight"}},
          {"decoder.layers.{l}.mlp.post_shared_expert_layernorm.weight", {"layers.{l}.post_feedforward_layernorm_1.weight"}},
          {"decoder.layers.{l}.mlp.router.weight", {"layers.{l}.router.proj.weight"}},
          {"decoder.layers.{l}.mlp.router.scale", {"layers.{l}.router.scale"}},
          {"decoder.layers.{l}.mlp.router.per_expert_scale", {"layers.{l}.router.per_expert_scale"}},
          // gate_up_proj[e] is already [gate; up]: TEGroupedMLP's fc1 of expert e, byte for byte.
          {"decoder.layers.{l}.mlp.experts.experts.linear_fc1.weight", {"layers.{l}.experts.gate_up_proj"}, T::kIdentity,
           When::kAlways, true},
          {"decoder.layers.{l}.mlp.experts.experts.linear_fc2.weight", {"layers.{l}.experts.down_proj"}, T::kIdentity,
           When::kAlways, true},
          {"decoder.layers.{l}.mlp.post_moe_layernorm.weight", {"layers.{l}.post_feedforward_layernorm_2.weight"}},
          {"decoder.layers.{l}.post_ffn_layernorm.weight", {"layers.{l}.post_feedforward_layernorm.weight"}},
          {"decoder.layers.{l}.layer_scalar", {"layers.{l}.layer_scalar"}},
      },
      // Every TE module of the spec (TE linears, TENorm q/k, post and pre-MLP norms, the final norm); the
      // Gemma4RMSNorm modules and the router have no extra state.
      {
          {"decoder.final_layernorm"},
          {"decoder.layers.{l}.self_attention.linear_qkv"},
          {"decoder.layers.{l}.self_attention.q_layernorm"},
          {"decoder.layers.{l}.self_attention.k_layernorm"},
          {"decoder.layers.{l}.self_attention.linear_proj"},
          {"decoder.layers.{l}.self_attention.linear_proj.post_layernorm"},
          {"decoder.layers.{l}.pre_mlp_layernorm"},
          {"decoder.layers.{l}.mlp.shared_experts.linear_fc1"},
          {"decoder.layers.{l}.mlp.shared_experts.linear_fc2"},
          {"decoder.layers.{l}.mlp.experts.experts.linear_fc1", ExtraState::kTransformerEngine, When::kAlways, true},
          {"decoder.layers.{l}.mlp.experts.experts.linear_fc2", ExtraState::kTransformerEngine, When::kAlways, true},
      },
  };
  return kTable;
}

}  // namespace g4::mappings
