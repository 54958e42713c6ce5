// Counts NaN and ±Inf elements of a tensor's raw bytes without converting the whole tensor.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/dtype.h"

namespace g4 {

struct NonFiniteCount {
  uint64_t nan = 0;
  uint64_t inf = 0;
  bool any() const { return nan || inf; }
};

// Integer and bool tensors have no non-finite values; fp8 is checked by its own encodings.
NonFiniteCount count_non_finite(DType dtype, std::span<const std::byte> bytes);

}  // namespace g4
