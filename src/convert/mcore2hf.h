// mcore2hf: a Megatron-Core torch_dist checkpoint in Megatron-Bridge's layout back to an HF Gemma 4
// checkpoint: HF names, stacked 3-D experts, the synthesized V of K=V layers and the zero K/V of KV-shared
// layers dropped (kept when the reference checkpoint has them), a complete config.json, and the tokenizer
// files. A V slot that no longer equals its K (trained independently, pitfalls.md P9) is reported.
#pragma once

#include <filesystem>
#include <optional>

#include "convert/hf2mcore.h"

namespace g4::convert {

struct Mcore2HfOptions {
  std::filesystem::path mcore;
  std::filesystem::path out;
  std::optional<std::filesystem::path> reference_hf;  // config, optional tensors and assets to match
  std::optional<std::filesystem::path> config_file;   // --config: the HF config.json (wins over reference_hf's)
  uint64_t max_shard_bytes = 5'000'000'000;
  unsigned threads = 0;
  std::optional<DType> dtype;
  OutputPolicy output;  // mcore2hf adds `mcore` and `reference_hf` to its protected inputs
  bool allow_non_finite = false;
  ConvertProgress progress;
};

Result<ConvertSummary> mcore2hf(const Mcore2HfOptions& options);

}  // namespace g4::convert
