// hf2mcore: an HF Gemma 4 checkpoint (safetensors) to a Megatron-Core torch_dist checkpoint in
// Megatron-Bridge's layout, streamed: each DCP chunk is gathered from the memory-mapped HF tensors as it is
// written, so memory stays at a few buffers whatever the model size.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convert/mcore_files.h"
#include "gemma4/config.h"
#include "runtime/dtype.h"
#include "runtime/output_policy.h"
#include "runtime/status.h"

namespace g4::convert {

struct ConvertProgress {
  std::function<void(uint64_t bytes_done, uint64_t bytes_total, size_t items_done, size_t items_total)> update;
};

struct Hf2McoreOptions {
  std::filesystem::path hf;
  std::filesystem::path out;
  unsigned threads = 0;
  std::optional<DType> dtype;  // unset: keep every tensor's dtype
  OutputPolicy output;  // --force, notices; hf2mcore adds `hf` to its protected inputs
  bool allow_non_finite = false;  // else a NaN or Inf in any tensor is an error naming it
  IterationLayout layout = IterationLayout::kBridge;
  // Megatron-Bridge's GEMMA4_CONVERSION_MODE=text for a conditional checkpoint: a plain GPTModel (no
  // "language_model." prefix, towers not written, the text provider in run_config.yaml). No effect on causal ones.
  bool text_mode = false;
  CommonStateLayout common = CommonStateLayout::kDcpObject;  // --common-pt: kCommonPt
  // --pad-vocab N: zero rows appended to the word embedding (and an untied output layer) up to a multiple of N;
  // 1 pads nothing. Unset: what Megatron-Bridge's provider of the family builds (default_pad_vocab).
  std::optional<int64_t> pad_vocab;
  ConvertProgress progress;
};

struct ConvertSummary {
  std::string family;      // "moe" or "dense"
  std::string form;        // "causal" or "conditional"
  size_t source_tensors = 0;
  size_t target_tensors = 0;  // DCP tensor keys (mcore) or HF tensors written (hf)
  size_t chunks = 0;
  size_t extra_state = 0;
  int64_t vocab_rows = 0;   // rows of the stored word embedding (the vocabulary plus its padding)
  uint64_t bytes = 0;       // payload bytes written
  std::vector<std::string> warnings;
  std::filesystem::path iteration_dir;
};

Result<ConvertSummary> hf2mcore(const Hf2McoreOptions& options);

// Megatron-Bridge 0.6.2's vocabulary padding. Gemma4DenseProvider.build() pads to a multiple of
// make_vocab_size_divisible_by (128, whatever the TP size); Gemma4ModelProvider (MoE) builds GPTModelProvider's
// model, padded only with should_pad_vocab (a vocabulary taken from the tokenizer), which a checkpoint stating its
// vocab_size never sets: 128 for dense, 1 for MoE.
inline constexpr int64_t kMaxPadVocab = int64_t{1} << 20;
int64_t default_pad_vocab(const gemma4::TextConfig& text);
// An error unless 1 <= n <= kMaxPadVocab.
Status check_pad_vocab(int64_t n);

// An error naming `where` when `bytes` (elements of `dtype`) hold a NaN or Inf.
Status check_finite(std::span<const std::byte> bytes, DType dtype, const std::string& where);

}  // namespace g4::convert
