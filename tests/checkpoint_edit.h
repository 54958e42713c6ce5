// Test helper: copy an HF checkpoint while editing, dropping or adding tensors, to plant defects.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/safetensors_writer.h"

namespace g4::testing {

struct Tensor {
  TensorSpec spec;
  std::string bytes;
};

// Copies `src` (config.json and tensors) to `dst`; `edit` may change a tensor or drop it (return false);
// `extra` tensors are appended. Fails the calling test on any I/O error.
void copy_checkpoint(const std::filesystem::path& src, const std::filesystem::path& dst,
                     const std::function<bool(Tensor&)>& edit, std::vector<Tensor> extra = {},
                     uint64_t max_shard = kDefaultMaxShardBytes);

}  // namespace g4::testing
