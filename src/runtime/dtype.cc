#include "runtime/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#include "runtime/status.h"

namespace g4 {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr std::array<DTypeInfo, kDTypeCount> kDTypes = {{
    {DType::kBF16, "BF16", 2, true},   {DType::kF16, "F16", 2, true},
    {DType::kF32, "F32", 4, true},     {DType::kF64, "F64", 8, true},
    {DType::kI64, "I64", 8, false},    {DType::kI32, "I32", 4, false},
    {DType::kI16, "I16", 2, false},    {DType::kI8, "I8", 1, false},
    {DType::kU64, "U64", 8, false},    {DType::kU32, "U32", 4, false},
    {DType::kU16, "U16", 2, false},    {DType::kU8, "U8", 1, false},
    {DType::kBool, "BOOL", 1, false},  {DType::kF8E4M3, "F8_E4M3", 1, true},
    {DType::kF8E5M2, "F8_E5M2", 1, true},
}};

const DTypeInfo& info(DType t) {
  const auto& i = kDTypes[static_cast<size_t>(t)];
  G4_CHECK(i.type == t);
  return i;
}

template <class T>
T load_le(const std::byte* p) {
  static_assert(std::endian::native == std::endian::little, "g4convert assumes a little-endian host");
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

std::string_view dtype_name(DType t) { return info(t).name; }
size_t dtype_size(DType t) { return info(t).size; }
bool dtype_is_float(DType t) { return info(t).is_float; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& i : kDTypes)
    if (i.name == name) return i.type;
  return std::nullopt;
}

bool dtype_converts_to_f32(DType t) {
  switch (t) {
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return false;  // scaled fp8 checkpoints need their scales; not ours to convert
    default:
      return true;
  }
}

float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN, sign kept
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);  // ties to even
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN payload
  if (exp == 0) {
    // Subnormal (or zero): value = mant * 2^-24, exact in f32.
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x3ffu);  // quiet NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: scale so one f16 subnormal ulp (2^-24) becomes 1.0, then round to even.
    float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // exact: multiply by 2^24
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xfffu + mant_odd;  // round to nearest even on the 13 dropped bits
  return sign | static_cast<uint16_t>(((abs >> 13) - (112u << 10)) & 0x7fffu);
}

void to_f32(DType from, const std::byte* src, float* dst, size_t n) {
  G4_CHECK(dtype_converts_to_f32(from));
  switch (from) {
    case DType::kF32: std::memcpy(dst, src, n * 4); return;
    case DType::kBF16: for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_le<uint16_t>(src + 2 * i)); return;
    case DType::kF16: for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_le<uint16_t>(src + 2 * i)); return;
    case DType::kF64: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<double>(src + 8 * i)); return;
    case DType::kI64: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<int64_t>(src + 8 * i)); return;
    case DType::kI32: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<int32_t>(src + 4 * i)); return;
    case DType::kI16: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<int16_t>(src + 2 * i)); return;
    case DType::kI8: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<int8_t>(src + i)); return;
    case DType::kU64: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<uint64_t>(src + 8 * i)); return;
    case DType::kU32: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<uint32_t>(src + 4 * i)); return;
    case DType::kU16: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<uint16_t>(src + 2 * i)); return;
    case DType::kU8: for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_le<uint8_t>(src + i)); return;
    case DType::kBool: for (size_t i = 0; i < n; ++i) dst[i] = load_le<uint8_t>(src + i) ? 1.0f : 0.0f; return;
    default: G4_CHECK(false);
  }
}

void from_f32(DType to, const float* src, std::byte* dst, size_t n) {
  switch (to) {
    case DType::kF32: std::memcpy(dst, src, n * 4); return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &b, 2);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default: G4_CHECK(false);
  }
}

}  // namespace g4
