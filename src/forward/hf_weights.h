// Read access to an HF checkpoint's text-decoder weights for the forward, straight from the mmap'd
// safetensors: each request converts one tensor (or one expert, or one block of embedding rows) to f32,
// and in bf16 mode rounds it to bf16 as from_pretrained(dtype=bfloat16) would. Nothing is cached, so
// resident memory is bounded by the tensors of the op in flight, not by the model.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "forward/mat.h"
#include "forward/precision.h"
#include "gemma4/config.h"
#include "runtime/safetensors_set.h"

namespace g4::forward {

class HfWeights {
 public:
  // Opens DIR and checks that every required text tensor is present with the shape the config implies.
  static Result<HfWeights> open(const std::filesystem::path& dir);

  const gemma4::ModelConfig& config() const { return config_; }
  const std::string& prefix() const { return prefix_; }  // "model." or "model.language_model."

  // 2-D tensor as [rows, cols]. `name` is relative to the text prefix ("layers.3.mlp.up_proj.weight").
  Result<Mat> matrix(const std::string& name, const Precision& p) const;
  // Any tensor flattened to a vector (norm weights, scales, layer_scalar).
  Result<std::vector<float>> vector(const std::string& name, const Precision& p) const;
  // Slice [index] of a 3-D stacked tensor [E, R, C] as [R, C] (one expert).
  Result<Mat> slice(const std::string& name, int64_t index, const Precision& p) const;
  // Rows `ids` of a 2-D table (embedding lookup); out-of-range ids are an error naming the id.
  Result<Mat> rows(const std::string& name, const std::vector<int64_t>& ids, const Precision& p) const;
  // Calls fn(first_row, block) for consecutive blocks of at most `block_rows` rows (the tied head, by vocab).
  Status for_each_row_block(const std::string& name, int64_t block_rows, const Precision& p,
                            const std::function<Status(int64_t first_row, const Mat& block)>& fn) const;

 private:
  HfWeights(gemma4::ModelConfig config, SafetensorsSet set);
  Result<const SafetensorsSet::Entry*> find(const std::string& name) const;
  void convert(const SafetensorsSet::Entry& e, uint64_t first, uint64_t count, float* out, const Precision& p) const;

  gemma4::ModelConfig config_;
  SafetensorsSet set_;
  std::string prefix_;
};

}  // namespace g4::forward
