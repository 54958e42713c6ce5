// roundtrip: hf -> mcore -> hf in a scratch directory, then a byte-for-byte comparison of every tensor and of
// every architecture field of the config. Anything that differs is listed; identical means bit-exact.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convert/hf2mcore.h"

namespace g4::convert {

struct RoundtripOptions {
  std::filesystem::path hf;
  std::optional<std::filesystem::path> keep;  // keep the intermediate checkpoints here (mcore/, hf/), written atomically
  OutputPolicy output;                         // for `keep` (--force); `hf` is protected
  unsigned threads = 0;
  bool text_mode = false;  // the intermediate Megatron checkpoint in Megatron-Bridge's text mode (hf2mcore --text-mode)
  CommonStateLayout common = CommonStateLayout::kDcpObject;  // of the intermediate Megatron checkpoint (--common-pt)
  ConvertProgress progress;
  // Called with the intermediate Megatron and HF directories before they are removed (roundtrip --forward).
  std::function<Status(const std::filesystem::path& mcore, const std::filesystem::path& hf)> inspect_intermediates;
};

struct Difference {
  std::string item;  // tensor name or config field path
  std::string original, roundtripped;
};

struct RoundtripReport {
  size_t tensors_compared = 0;
  uint64_t bytes_compared = 0;
  std::vector<Difference> tensor_differences;
  std::vector<Difference> config_differences;
  std::vector<std::string> warnings;
  ConvertSummary to_mcore, to_hf;
  bool identical() const { return tensor_differences.empty() && config_differences.empty(); }
};

Result<RoundtripReport> roundtrip(const RoundtripOptions& options);

// The comparison alone: every tensor of `original` against `converted` (names, dtype, shape, bytes), and
// every field of the original config.json (minus bookkeeping such as transformers_version) against the
// converted one.
Status compare_hf_checkpoints(const std::filesystem::path& original, const std::filesystem::path& converted, RoundtripReport& report);

}  // namespace g4::convert
