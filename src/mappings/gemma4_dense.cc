// Megatron-Bridge's _dense_mapping_registry (Gemma4Bridge with Gemma4DenseProvider: E2B, E4B, 31B) at
// NVIDIA-NeMo/Megatron-Bridge@067f987df. The local spec keeps every norm a separate module.
#include "mappings/gemma4_shared_rows.h"

namespace g4::mappings {

const FamilyTable& dense_text_table() {
  using P = Parallel;
  static const FamilyTable kTable{
      "dense",
      shared::rows(
          shared::kWordEmbedding,
          // A VocabParallelEmbedding over the PLE vocabulary, never padded.
          Rule{.megatron = "per_layer_embedding.weight", .hf = {"embed_tokens_per_layer.weight"}, .when = When::kPle,
               .parallel = P::kVocab},
          Rule{.megatron = "per_layer_model_proj.weight", .hf = {"per_layer_model_projection.weight"}, .when = When::kPle,
               .parallel = P::kColumn},
          Rule{.megatron = "per_layer_proj_norm.weight", .hf = {"per_layer_projection_norm.weight"}, .when = When::kPle},
          shared::kFinalNorm, shared::kOutputLayer),
      shared::rows(
          Rule{.megatron = "decoder.layers.{l}.input_layernorm.weight", .hf = {"layers.{l}.input_layernorm.weight"}},
          shared::kAttention,
          Rule{.megatron = "decoder.layers.{l}.post_self_attn_layernorm.weight", .hf = {"layers.{l}.post_attention_layernorm.weight"}},
          // pitfalls.md P14: the dense MLP's pre-norm is pre_feedforward_layernorm, never post_attention_layernorm.
          Rule{.megatron = "decoder.layers.{l}.pre_mlp_layernorm.weight", .hf = {"layers.{l}.pre_feedforward_layernorm.weight"}},
          shared::kGateUp("decoder.layers.{l}.mlp.linear_fc1.weight"),
          shared::kDown("decoder.layers.{l}.mlp.linear_fc2.weight"),
          Rule{.megatron = "decoder.layers.{l}.post_mlp_layernorm.weight", .hf = {"layers.{l}.post_feedforward_layernorm.weight"}},
          // Plain nn.Linear modules of the layer: every rank holds them whole.
          Rule{.megatron = "decoder.layers.{l}.per_layer_input_gate.weight", .hf = {"layers.{l}.per_layer_input_gate.weight"},
               .when = When::kPle, .parallel = P::kReplicatedLinear, .torch_linear = true},
          Rule{.megatron = "decoder.layers.{l}.per_layer_projection.weight", .hf = {"layers.{l}.per_layer_projection.weight"},
               .when = When::kPle, .parallel = P::kReplicatedLinear, .torch_linear = true},
          Rule{.megatron = "decoder.layers.{l}.post_per_layer_input_norm.weight", .hf = {"layers.{l}.post_per_layer_input_norm.weight"},
               .when = When::kPle},
          shared::kLayerScalar),
      // Megatron's local linears (None) and the block's final norm. Kept although MB 0.6.2 was observed without it:
      // its dense spec is a layer ModuleSpec, so megatron-core 0.19.2's TransformerBlock builds the final norm as
      // LayerNormImpl (transformer_block.py: TENorm whenever Transformer Engine imports, else Apex/torch norms);
      // TENorm is TE's RMSNorm, an ops BasicOperation whose get_extra_state() is an empty uint8 tensor without FP8,
      // so on any TE machine the model requests this object. MB 0.6.2 ran without TE (megatron-bridge-observed.md)
      // and neither wrote nor requested it: written (harmless where not requested), not required.
      {
          {.module = "decoder.final_layernorm", .requested = false},
          {"per_layer_model_proj", ExtraState::kLocal, When::kPle},
          {"decoder.layers.{l}.self_attention.linear_qkv", ExtraState::kLocal},
          {"decoder.layers.{l}.self_attention.linear_proj", ExtraState::kLocal},
          {"decoder.layers.{l}.mlp.linear_fc1", ExtraState::kLocal},
          {"decoder.layers.{l}.mlp.linear_fc2", ExtraState::kLocal},
      },
  };
  return kTable;
}

}  // namespace g4::mappings
