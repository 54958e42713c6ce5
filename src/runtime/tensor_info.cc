#include "runtime/tensor_info.h"

#include <limits>

namespace g4 {

std::optional<uint64_t> checked_numel(const Shape& shape) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    uint64_t u = static_cast<uint64_t>(d);
    if (u != 0 && n > kMax / u) return std::nullopt;
    n *= u;
  }
  return n;
}

uint64_t TensorInfo::numel() const { return checked_numel(shape).value_or(0); }

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace g4
