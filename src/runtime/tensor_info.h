// What a checkpoint says about one tensor: name, element type, shape (PyTorch order) and where its bytes are.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace g4 {

using Shape = std::vector<int64_t>;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the file's data section
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
  uint64_t numel() const;
};

// Product of dims, or nullopt when a dim is negative or the product overflows 2^63.
std::optional<uint64_t> checked_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2048, 2816]"

}  // namespace g4
