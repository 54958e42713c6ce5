// Element types of checkpoint tensors, their safetensors names, sizes, and exact conversions.
// Conversions round to nearest even and keep NaN (as a quiet NaN with its sign), like PyTorch's casts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace g4 {

enum class DType : uint8_t {
  kBF16, kF16, kF32, kF64,
  kI64, kI32, kI16, kI8,
  kU64, kU32, kU16, kU8,
  kBool, kF8E4M3, kF8E5M2,
};
inline constexpr int kDTypeCount = 15;

// safetensors' spelling ("BF16", "F32", ...).
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
size_t dtype_size(DType t);
bool dtype_is_float(DType t);
// Types whose values we convert to and from f32 (the floating types a Gemma checkpoint holds,
// plus integers and bool widened exactly where f32 can hold them).
bool dtype_converts_to_f32(DType t);

// Scalar conversions.
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of `src` (type `from`, little-endian bytes) to f32. REQUIRES dtype_converts_to_f32(from).
void to_f32(DType from, const std::byte* src, float* dst, size_t n);
// Converts n f32 values to `to` (BF16, F16 or F32) and writes little-endian bytes.
void from_f32(DType to, const float* src, std::byte* dst, size_t n);

}  // namespace g4
