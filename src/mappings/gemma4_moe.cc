// Megatron-Bridge's _moe_mapping_registry (Gemma4Bridge, 26B-A4B) at NVIDIA-NeMo/Megatron-Bridge@067f987df,
// after the fusions were removed (44561351a): every rule is a pure reshuffle.
#include "mappings/gemma4_shared_rows.h"

namespace g4::mappings {

const FamilyTable& moe_text_table() {
  using P = Parallel;
  static const FamilyTable kTable{
      "moe",
      shared::rows(shared::kWordEmbedding, shared::kFinalNorm, shared::kOutputLayer),
      shared::rows(
          // The input RMSNorm is fused into TE's LayerNormColumnParallelLinear.
          Rule{.megatron = "decoder.layers.{l}.self_attention.linear_qkv.layer_norm_weight", .hf = {"layers.{l}.input_layernorm.weight"}},
          shared::kAttention,
          // TERowParallelLinearLayerNorm: the post-attention norm lives on linear_proj.
          Rule{.megatron = "decoder.layers.{l}.self_attention.linear_proj.post_layernorm.weight",
               .hf = {"layers.{l}.post_attention_layernorm.weight"}},
          // Routed experts take pre_feedforward_layernorm_2; the dense MLP runs as the shared expert.
          Rule{.megatron = "decoder.layers.{l}.pre_mlp_layernorm.weight", .hf = {"layers.{l}.pre_feedforward_layernorm_2.weight"}},
          Rule{.megatron = "decoder.layers.{l}.pre_shared_expert_layernorm.weight", .hf = {"layers.{l}.pre_feedforward_layernorm.weight"}},
          shared::kGateUp("decoder.layers.{l}.mlp.shared_experts.linear_fc1.weight"),
          shared::kDown("decoder.layers.{l}.mlp.shared_experts.linear_fc2.weight"),
          Rule{.megatron = "decoder.layers.{l}.mlp.post_shared_expert_layernorm.weight",
               .hf = {"layers.{l}.post_feedforward_layernorm_1.weight"}},
          Rule{.megatron = "decoder.layers.{l}.mlp.router.weight", .hf = {"layers.{l}.router.proj.weight"},
               .parallel = P::kReplicatedLinear},
          Rule{.megatron = "decoder.layers.{l}.mlp.router.scale", .hf = {"layers.{l}.router.scale"}},
          Rule{.megatron = "decoder.layers.{l}.mlp.router.per_expert_scale", .hf = {"layers.{l}.router.per_expert_scale"}},
          // gate_up_proj[e] is already [gate; up]: TEGroupedMLP's fc1 of expert e, byte for byte. Split over expert
          // ranks, and within an expert column- (fc1) or row-parallel (fc2).
          Rule{.megatron = "decoder.layers.{l}.mlp.experts.experts.linear_fc1.weight", .hf = {"layers.{l}.experts.gate_up_proj"},
               .experts = true, .parallel = P::kColumn},
          Rule{.megatron = "decoder.layers.{l}.mlp.experts.experts.linear_fc2.weight", .hf = {"layers.{l}.experts.down_proj"},
               .experts = true, .parallel = P::kRow},
          Rule{.megatron = "decoder.layers.{l}.mlp.post_moe_layernorm.weight", .hf = {"layers.{l}.post_feedforward_layernorm_2.weight"}},
          Rule{.megatron = "decoder.layers.{l}.post_ffn_layernorm.weight", .hf = {"layers.{l}.post_feedforward_layernorm.weight"}},
          shared::kLayerScalar),
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
