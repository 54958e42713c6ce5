// The text-decoder tensors an HF Gemma 4 checkpoint holds, derived from the config (gemma4-hf.md §2):
// names with the form's prefix, shapes in PyTorch order, and each tensor's role. synth writes exactly
// these; inspect checks a checkpoint against them.
#pragma once

#include <string>
#include <vector>

#include "gemma4/config.h"
#include "runtime/tensor_info.h"

namespace g4::gemma4 {

enum class TensorRole : uint8_t {
  kEmbedding,    // token or PLE embedding table
  kLinear,       // nn.Linear weight [out, in]
  kExperts,      // stacked expert weights [E, ...]
  kNorm,         // RMSNorm weight (used as x·w, not 1+w)
  kLayerScalar,  // [1] buffer scaling the whole residual stream
  kRouterScale,  // router.scale [H]
  kExpertScale,  // router.per_expert_scale [E]
};

std::string_view role_name(TensorRole role);

struct HfTensor {
  std::string name;  // full checkpoint key
  Shape shape;
  TensorRole role;
  int layer = -1;         // -1 for model-level tensors
  bool optional = false;  // tolerated when present: K/V of KV-shared layers (older E-series uploads), tied lm_head
};

// Every text tensor of the checkpoint, in a stable order (embedding, model-level PLE, layers, final norm).
// `with_shared_kv` makes the redundant K/V of KV-shared layers required instead of optional.
std::vector<HfTensor> hf_text_tensors(const ModelConfig& config, bool with_shared_kv = false);

// Prefixes of the multimodal towers a conditional checkpoint may carry, passed through untouched.
const std::vector<std::string>& tower_prefixes(bool vision);

}  // namespace g4::gemma4
