#include "runtime/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "test_support.h"

namespace g4 {
namespace {

TEST(DType, NamesRoundTripForEveryType) {
  for (int i = 0; i < kDTypeCount; ++i) {
    DType t = static_cast<DType>(i);
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value()) << dtype_name(t);
    EXPECT_EQ(*back, t);
  }
  EXPECT_FALSE(dtype_from_name("bf16").has_value());  // safetensors spells it BF16
  EXPECT_FALSE(dtype_from_name("Q4_K").has_value());
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF64), 8u);
  EXPECT_EQ(dtype_size(DType::kBool), 1u);
}

TEST(DType, EveryBf16BitPatternSurvivesF32AndBack) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    float f = bf16_to_f32(static_cast<uint16_t>(b));
    uint16_t back = f32_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(back))) << b;
      EXPECT_EQ(back & 0x8000u, b & 0x8000u) << "NaN sign kept for " << b;
    } else {
      ASSERT_EQ(back, b) << "bf16 pattern " << b;
    }
  }
}

TEST(DType, F32ToBf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80u);
  // 1.0078125 + 2^-8 is halfway between two bf16 values with odd and even mantissas: rounds up to even.
  EXPECT_EQ(f32_to_bf16(1.0078125f + std::ldexp(1.0f, -8)), 0x3f82u);
  // Just above halfway rounds up.
  EXPECT_EQ(f32_to_bf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3f81u);
  // Largest finite f32 rounds to bf16 infinity, as PyTorch does.
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80u);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000u);
  uint16_t nan = f32_to_bf16(std::bit_cast<float>(0x7f800001u));  // signalling NaN with a low payload
  EXPECT_TRUE(std::isnan(bf16_to_f32(nan))) << "NaN must not truncate to infinity";
}

TEST(DType, EveryF16BitPatternSurvivesF32AndBack) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    uint16_t back = f32_to_f16(f);
    if (std::isnan(f)) EXPECT_TRUE(std::isnan(f16_to_f32(back))) << h;
    else ASSERT_EQ(back, h) << "f16 pattern " << h;
  }
}

TEST(DType, F32ToF16HandlesOverflowSubnormalsAndTies) {
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bffu);  // largest finite
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00u);  // halfway to 65536: ties to even -> infinity
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bffu);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001u);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000u);  // halfway to it: ties to even -> 0
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002u);  // 1.5 ulp: ties to even -> 2
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie to even
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000u);
}

TEST(DType, BulkConversionsMatchScalarOnes) {
  const float values[] = {0.0f, -1.5f, 3.14159f, 1e-8f, -65504.0f, std::numeric_limits<float>::infinity()};
  const size_t n = std::size(values);
  std::vector<std::byte> bytes(n * 2);
  from_f32(DType::kBF16, values, bytes.data(), n);
  std::vector<float> back(n);
  to_f32(DType::kBF16, bytes.data(), back.data(), n);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(values[i])));

  const int64_t ints[] = {-3, 0, 7, 1 << 20};
  std::vector<float> widened(4);
  to_f32(DType::kI64, reinterpret_cast<const std::byte*>(ints), widened.data(), 4);
  EXPECT_EQ(widened[0], -3.0f);
  EXPECT_EQ(widened[3], 1048576.0f);
  const double d = 0.1;
  float f;
  to_f32(DType::kF64, reinterpret_cast<const std::byte*>(&d), &f, 1);
  EXPECT_EQ(f, 0.1f);  // round to nearest, like a C cast
}

}  // namespace
}  // namespace g4
