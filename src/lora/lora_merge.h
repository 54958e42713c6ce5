// lora-merge: a LoRA adapter merged into its base checkpoint, written as an HF safetensors checkpoint.
// The adapter is a PEFT adapter directory (adapter_config.json) or a Megatron-Bridge adapter checkpoint, first
// exported to PEFT (export_peft_adapter) in a private scratch directory; the base is an HF checkpoint or a
// Megatron torch_dist checkpoint, first converted (mcore2hf) there too. Every tensor an adapter delta targets
// becomes W' = round_to_dtype(fp32(W) + s · (B @ A)) (lora_delta.h states the exact order); every other tensor
// is copied byte for byte, with the base's key set, dtypes, shard files and index (unless max_shard_bytes asks
// for new shards), and config.json and the tokenizer/side files copied unchanged. Streamed: one tensor's factors
// at a time per worker, bytes in chunks.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "convert/hf2mcore.h"
#include "lora/peft_adapter.h"
#include "runtime/output_policy.h"

namespace g4::lora {

struct LoraMergeOptions {
  std::filesystem::path adapter;  // PEFT adapter directory, or a Megatron adapter checkpoint (root or iteration dir)
  std::filesystem::path base;     // HF checkpoint directory, or a Megatron torch_dist checkpoint
  std::filesystem::path out;
  std::optional<std::filesystem::path> config_file;  // --config: the HF config of a Megatron base or adapter
  std::optional<int64_t> rank;    // --rank / --alpha: a Megatron adapter without a peft: section only
  std::optional<double> alpha;
  bool allow_inexact = false;     // a Megatron adapter's 26B linear_proj adapters (lora-peft.md A.2), with a warning
  std::optional<uint64_t> max_shard_bytes;  // unset: keep the base's shard files
  unsigned threads = 0;
  OutputPolicy output;            // the adapter, base and config are added to its protected inputs
  convert::ConvertProgress progress;
};

struct LoraMergeSummary {
  std::string adapter_kind;  // "peft" or "megatron"
  std::string base_kind;     // "hf" or "megatron"
  size_t tensors = 0;        // tensors written
  size_t merged = 0;         // of which changed by a delta
  uint64_t bytes = 0;
  std::vector<std::string> warnings;
};

Result<LoraMergeSummary> lora_merge(const LoraMergeOptions& options);

// The merge itself: `adapter` into the HF checkpoint `base_hf`, written into the existing directory `out_dir`
// (an OutputDir's temp path). Errors name the base file, the tensor and the adapter file: a delta whose tensor
// the base lacks or whose shape disagrees, a targeted tensor of a dtype other than BF16/F16/F32, a merged NaN/Inf.
struct MergeWriteOptions {
  std::optional<uint64_t> max_shard_bytes;
  unsigned threads = 0;
  convert::ConvertProgress progress;
};
Result<LoraMergeSummary> merge_into_hf(const PeftAdapter& adapter, const std::filesystem::path& base_hf,
                                       const std::filesystem::path& out_dir, const MergeWriteOptions& options);

}  // namespace g4::lora
