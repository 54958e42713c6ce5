// The rows both Gemma 4 families share (the dense and MoE tables compose them instead of copying them), in
// Megatron-Bridge's names. Internal to src/mappings.
#pragma once

#include <iterator>
#include <type_traits>
#include <vector>

#include "mappings/mapping_table.h"

namespace g4::mappings::shared {

inline constexpr Rule kWordEmbedding{.megatron = "embedding.word_embeddings.weight",
                                     .hf = {"embed_tokens.weight"},
                                     .vocab_rows = true,
                                     .parallel = Parallel::kVocab};
inline constexpr Rule kFinalNorm{.megatron = "decoder.final_layernorm.weight", .hf = {"norm.weight"}};
inline constexpr Rule kOutputLayer{.megatron = "output_layer.weight",
                                   .hf = {"lm_head.weight"},
                                   .when = When::kUntied,
                                   .vocab_rows = true,
                                   .parallel = Parallel::kVocab};

// The attention core, after the input norm (a module of its own in the dense spec, fused into linear_qkv in
// the MoE one) and before the post-attention norm (also placed differently).
inline constexpr std::array<Rule, 4> kAttention{{
    {.megatron = "decoder.layers.{l}.self_attention.linear_qkv.weight",
     .hf = {"layers.{l}.self_attn.q_proj.weight", "layers.{l}.self_attn.k_proj.weight", "layers.{l}.self_attn.v_proj.weight"},
     .transform = Transform::kQkv,
     .parallel = Parallel::kColumn,
     .v_from_k = true},
    {.megatron = "decoder.layers.{l}.self_attention.q_layernorm.weight", .hf = {"layers.{l}.self_attn.q_norm.weight"}},
    // KV-shared layers' k_norm may be absent: ones, as for any norm.
    {.megatron = "decoder.layers.{l}.self_attention.k_layernorm.weight",
     .hf = {"layers.{l}.self_attn.k_norm.weight"},
     .absent_fill = Fill::kOnes},
    {.megatron = "decoder.layers.{l}.self_attention.linear_proj.weight",
     .hf = {"layers.{l}.self_attn.o_proj.weight"},
     .parallel = Parallel::kRow},
}};

// The MLP's (dense) or shared expert's (MoE) fc1 [gate; up] and fc2 under `module` ("mlp." or "mlp.shared_experts.").
inline constexpr Rule kGateUp(std::string_view megatron) {
  return {.megatron = megatron,
          .hf = {"layers.{l}.mlp.gate_proj.weight", "layers.{l}.mlp.up_proj.weight"},
          .transform = Transform::kGateUp,
          .parallel = Parallel::kColumn};
}
inline constexpr Rule kDown(std::string_view megatron) {
  return {.megatron = megatron, .hf = {"layers.{l}.mlp.down_proj.weight"}, .parallel = Parallel::kRow};
}

inline constexpr Rule kLayerScalar{.megatron = "decoder.layers.{l}.layer_scalar", .hf = {"layers.{l}.layer_scalar"}};

// Rows in order: a family's table lists its own rows around the shared ones.
template <class... Parts>
std::vector<Rule> rows(const Parts&... parts) {
  std::vector<Rule> out;
  auto add = [&](const auto& part) {
    if constexpr (std::is_same_v<std::decay_t<decltype(part)>, Rule>) out.push_back(part);
    else out.insert(out.end(), std::begin(part), std::end(part));
  };
  (add(parts), ...);
  return out;
}

}  // namespace g4::mappings::shared
