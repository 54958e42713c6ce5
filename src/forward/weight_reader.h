// Read access to a checkpoint's text-decoder parameters for the forward, shared by both semantics: each format
// (HfWeights: safetensors; McoreWeights: torch_dist) says where a parameter is stored and hands out its bytes;
// everything else — matrices, expert slices, vocabulary blocks, embedding rows, small vectors — is written once
// here. Tensors come back in the stored type, as views of the mapped file where the bytes are contiguous (the
// pages are released when the last handle goes), so resident memory is bounded by the tensors in flight.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "forward/mat.h"
#include "forward/precision.h"
#include "forward/tensor.h"
#include "gemma4/config.h"
#include "runtime/tensor_info.h"

namespace g4::forward {

class WeightReader {
 public:
  virtual ~WeightReader() = default;

  virtual const gemma4::ModelConfig& config() const = 0;

  // A stored parameter: its type, its own shape (stacked axes resolved away), the key messages name, and its
  // elements [first, first + count) as a host tensor [1, count] in the stored type.
  struct Stored {
    DType dtype = DType::kBF16;
    Shape shape;
    std::string key;
    std::function<Result<Tensor>(uint64_t first, uint64_t count)> elements;
  };
  // `name` in this side's naming; an error names the checkpoint and the parameter.
  virtual Result<Stored> stored(const std::string& name) const = 0;

  // A 2-D parameter as [rows, cols].
  Result<Tensor> matrix(const std::string& name) const;
  // Slice `index` of a 3-D stack [E, R, C] as [R, C] (one expert).
  Result<Tensor> slice(const std::string& name, int64_t index) const;
  // Rows [first, first + count) of a 2-D parameter (the tied head, by vocabulary blocks).
  Result<Tensor> row_block(const std::string& name, int64_t first, int64_t count) const;
  // Row count of a 2-D parameter.
  Result<int64_t> row_count(const std::string& name) const;
  // Rows `ids` of a 2-D table as f32 rounded per `p` (the embedding lookup); an out-of-range id is an error naming it.
  Result<Mat> rows(const std::string& name, const std::vector<int64_t>& ids, const Precision& p) const;
  // Any parameter flattened to f32 values rounded per `p` (norm weights, scales, layer_scalar).
  Result<std::vector<float>> vector(const std::string& name, const Precision& p) const;
};

}  // namespace g4::forward
