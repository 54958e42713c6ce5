// Megatron-Bridge's _dense_mapping_registry (Gemma4Bridge with Gemma4DenseProvider: E2B, E4B, 31B) at
// NVIDIA-NeMo/Megatron-Bridge@067f987df. The local spec keeps every norm a separate module.
#include "mappings/mapping_table.h"

namespace g4::mappings {

const FamilyTable& dense_text_table() {
  using T = Transform;
  static const FamilyTable kTable{
      "dense",
      {
          {.megatron = "embedding.word_embeddings.weight", .hf = {"embed_tokens.weight"}, .vocab_rows = true},
          {"per_layer_embedding.weight", {"embed_tokens_per_layer.weight"}, T::kIdentity, When::kPle},
          {"per_layer_model_proj.weight", {"per_layer_model_projection.weight"}, T::kIdentity, When::kPle},
          {"per_layer_proj_norm.weight", {"per_layer_projection_norm.weight"}, T::kIdentity, When::kPle},
          {"decoder.final_layernorm.weight", {"norm.weight"}},
          {.megatron = "output_layer.weight", .hf = {"lm_head.weight"}, .when = When::kUntied, .vocab_rows = true},
      },
      {
          {"decoder.layers.{l}.input_layernorm.weight", {"layers.{l}.input_layernorm.weight"}},
          {"decoder.layers.{l}.self_attention.linear_qkv.weight",
           {"layers.{l}.self_attn.q_proj.weight", "layers.{l}.self_attn.k_proj.weight", "layers.{l}.self_attn.v_proj.weight"},
           T::kQkv},
          {"decoder.layers.{l}.self_attention.q_layernorm.weight", {"layers.{l}.self_attn.q_norm.weight"}},
          {"decoder.layers.{l}.self_attention.k_layernorm.weight", {"layers.{l}.self_attn.k_norm.weight"}},
          {"decoder.layers.{l}.self_attention.linear_proj.weight", {"layers.{l}.self_attn.o_proj.weight"}},
          {"decoder.layers.{l}.post_self_attn_layernorm.weight", {"layers.{l}.post_attention_layernorm.weight"}},
          // pitfalls.md P14: the dense MLP's pre-norm is pre_feedforward_layernorm, never post_attention_layernorm.
          {"decoder.layers.{l}.pre_mlp_layernorm.weight", {"layers.{l}.pre_feedforward_layernorm.weight"}},
          {"decoder.layers.{l}.mlp.linear_fc1.weight", {"layers.{l}.mlp.gate_proj.weight", "layers.{l}.mlp.up_proj.weight"},
           T::kGateUp},
          {"decoder.layers.{l}.mlp.linear_fc2.weight", {"layers.{l}.mlp.down_proj.weight"}},
          {"decoder.layers.{l}.post_mlp_layernorm.weight", {"layers.{l}.post_feedforward_layernorm.weight"}},
          {"decoder.layers.{l}.per_layer_input_gate.weight", {"layers.{l}.per_layer_input_gate.weight"}, T::kIdentity, When::kPle},
          {"decoder.layers.{l}.per_layer_projection.weight", {"layers.{l}.per_layer_projection.weight"}, T::kIdentity, When::kPle},
          {"decoder.layers.{l}.post_per_layer_input_norm.weight", {"layers.{l}.post_per_layer_input_norm.weight"}, T::kIdentity,
           When::kPle},
          {"decoder.layers.{l}.layer_scalar", {"layers.{l}.layer_scalar"}},
      },
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
