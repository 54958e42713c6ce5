#include "runtime/finite_scan.h"

#include <cstring>

namespace g4 {
namespace {

// Exponent-all-ones test on the raw bits: mantissa zero is Inf, non-zero is NaN.
template <class Bits>
NonFiniteCount scan(std::span<const std::byte> bytes, Bits exp_mask, Bits mant_mask) {
  NonFiniteCount c;
  const size_t n = bytes.size() / sizeof(Bits);
  for (size_t i = 0; i < n; ++i) {
    Bits v;
    std::memcpy(&v, bytes.data() + i * sizeof(Bits), sizeof(Bits));
    if ((v & exp_mask) == exp_mask) ((v & mant_mask) ? c.nan : c.inf)++;
  }
  return c;
}

}  // namespace

NonFiniteCount count_non_finite(DType dtype, std::span<const std::byte> bytes) {
  switch (dtype) {
    case DType::kBF16: return scan<uint16_t>(bytes, 0x7f80u, 0x007fu);
    case DType::kF16: return scan<uint16_t>(bytes, 0x7c00u, 0x03ffu);
    case DType::kF32: return scan<uint32_t>(bytes, 0x7f800000u, 0x007fffffu);
    case DType::kF64: return scan<uint64_t>(bytes, 0x7ff0000000000000ull, 0x000fffffffffffffull);
    case DType::kF8E5M2: return scan<uint8_t>(bytes, 0x7cu, 0x03u);
    case DType::kF8E4M3: {  // e4m3fn: no Inf; NaN is S.1111.111
      NonFiniteCount c;
      for (std::byte b : bytes)
        if ((static_cast<uint8_t>(b) & 0x7fu) == 0x7fu) ++c.nan;
      return c;
    }
    default: return {};
  }
}

}  // namespace g4
