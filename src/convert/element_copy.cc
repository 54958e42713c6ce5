#include "convert/element_copy.h"

#include <cstring>
#include <vector>

namespace g4::convert {

Status copy_elements(std::span<const std::byte> src, DType from, std::span<std::byte> dst, DType to) {
  if (from == to) {
    std::memcpy(dst.data(), src.data(), dst.size());
    return {};
  }
  if (!dtype_converts_to_f32(from) || !(to == DType::kBF16 || to == DType::kF16 || to == DType::kF32))
    return Status::not_supported(std::string("cannot cast ") + std::string(dtype_name(from)) + " to " + std::string(dtype_name(to)));
  constexpr size_t kBlock = 1 << 14;
  std::vector<float> tmp(kBlock);
  const size_t n = src.size() / dtype_size(from);
  for (size_t i = 0; i < n; i += kBlock) {
    const size_t m = std::min(kBlock, n - i);
    to_f32(from, src.data() + i * dtype_size(from), tmp.data(), m);
    from_f32(to, tmp.data(), dst.data() + i * dtype_size(to), m);
  }
  return {};
}

void fill_elements(Fill fill, DType to, std::span<std::byte> dst) {
  if (fill != Fill::kOnes) {
    std::memset(dst.data(), 0, dst.size());
    return;
  }
  const size_t es = dtype_size(to);
  std::vector<std::byte> one(es);
  const float f = 1.0f;
  from_f32(to, &f, one.data(), 1);
  for (size_t i = 0; i + es <= dst.size(); i += es) std::memcpy(dst.data() + i, one.data(), es);
}

DType converted_dtype(DType source, std::optional<DType> target) {
  if (!target || !dtype_is_float(source)) return source;
  return *target;
}

}  // namespace g4::convert
