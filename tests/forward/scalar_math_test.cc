// The scalar maths both backends share (scalar_math.h), through g++: the CUDA kernels call the same functions,
// so these host checks cover the per-element maths of the device path too.
#include "forward/scalar_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "runtime/dtype.h"

namespace g4::forward::scalar {
namespace {

float from_bits(uint32_t u) { return bits_float(u); }

int64_t ulp_distance(float a, float b) {
  auto key = [](float x) {
    const int32_t i = static_cast<int32_t>(float_bits(x));
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::llabs(key(a) - key(b));
}

TEST(ScalarMath, Bf16RoundsHalfwayCasesToEven) {
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f), 1.0f);                  // halfway, even neighbour below
  EXPECT_EQ(round_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);    // halfway, even neighbour above
  EXPECT_EQ(round_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // just above halfway
  EXPECT_EQ(round_bf16(-(1.0f + 0x1p-8f)), -1.0f);
  EXPECT_EQ(bf16_bits(from_bits(0x7f7fffffu)), 0x7f80u);        // FLT_MAX rounds to +inf, as torch does
}

TEST(ScalarMath, Bf16MatchesTheRuntimeConversionOnRandomBitPatterns) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t u = static_cast<uint32_t>(rng());
    ASSERT_EQ(bf16_bits(from_bits(u)), f32_to_bf16(from_bits(u))) << std::hex << u;
  }
}

TEST(ScalarMath, Bf16KeepsNanQuietWithItsSignAndInfinities) {
  EXPECT_EQ(bf16_bits(from_bits(0x7f800001u)), 0x7fc0u);  // signalling NaN, payload only in the dropped bits
  EXPECT_EQ(bf16_bits(from_bits(0xff800001u)), 0xffc0u);  // negative
  EXPECT_EQ(bf16_bits(from_bits(0x7fffffffu)), 0x7fffu);  // all-ones payload must not carry into the sign
  EXPECT_TRUE(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::infinity()), 0x7f80u);
  EXPECT_EQ(bf16_bits(-std::numeric_limits<float>::infinity()), 0xff80u);
  EXPECT_EQ(round_if(false, 1.0f + 0x1p-20f), 1.0f + 0x1p-20f);  // fp32 mode passes values through
}

TEST(ScalarMath, GeluTanhIsWithinFourUlpOfTheDoublePrecisionFormula) {
  // Below -0.5, PyTorch's formula cancels in 1 + tanh(·) (fp32 carries it, so do we): there the error is bounded in
  // absolute terms by a few ulp of 1 times |x|/2 instead.
  for (float x = -12.0f; x <= 12.0f; x += 0.00731f) {
    const double xd = x;
    const double ref = 0.5 * xd * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (xd + 0.044715 * xd * xd * xd)));
    const float got = gelu_tanh(x);
    if (x >= -0.5f)
      EXPECT_LE(ulp_distance(got, static_cast<float>(ref)), 4) << x;
    else
      EXPECT_LE(std::abs(got - ref), 4 * std::abs(xd) * std::numeric_limits<float>::epsilon()) << x;
  }
  EXPECT_EQ(gelu_tanh(0.0f), 0.0f);
  EXPECT_LE(gelu_tanh(-20.0f), 0.0f);
}

TEST(ScalarMath, GeGluRoundsAfterTheActivationAndAfterTheProduct) {
  for (float g = -3.0f; g <= 3.0f; g += 0.0137f) {
    const float up = 1.0f + 0x1p-7f;
    EXPECT_EQ(geglu(true, g, up), round_bf16(round_bf16(gelu_tanh(g)) * up)) << g;
    EXPECT_EQ(geglu(false, g, up), gelu_tanh(g) * up) << g;
  }
}

TEST(ScalarMath, SoftcapRoundsAtEachOfItsThreeSteps) {
  const float cap = 30.0f;
  int inner_rounding_mattered = 0;
  for (float x = -100.0f; x <= 100.0f; x += 0.0371f) {
    const float three = softcap(true, x, cap);
    EXPECT_EQ(three, round_bf16(round_bf16(tanhf(round_bf16(x / cap))) * cap)) << x;
    EXPECT_EQ(round_bf16(three), three);  // a bf16 value
    EXPECT_EQ(softcap(false, x, cap), tanhf(x / cap) * cap) << x;
    if (three != round_bf16(tanhf(x / cap) * cap)) ++inner_rounding_mattered;
  }
  EXPECT_GT(inner_rounding_mattered, 100);  // one rounding at the end would not be the same function
}

TEST(ScalarMath, RopeElementPairsJWithJPlusOrMinusHalfTheHead) {
  const float head[6] = {1, 2, 3, 10, 20, 30};
  const float rotate_half[6] = {-10, -20, -30, 1, 2, 3};  // cat(-x2, x1)
  for (int64_t j = 0; j < 6; ++j) {
    EXPECT_EQ(rope_element(false, head, j, 6, 1.0f, 0.0f), head[j]) << j;
    EXPECT_EQ(rope_element(false, head, j, 6, 0.0f, 1.0f), rotate_half[j]) << j;
    EXPECT_EQ(rope_element(false, head, j, 6, 0.5f, 0.25f), head[j] * 0.5f + rotate_half[j] * 0.25f) << j;
  }
  const float h2[2] = {1.0f + 0x1p-9f, 3.0f};
  const float c = 1.0f + 0x1p-9f, s = 0.7f;  // bf16 mode: each product and the sum rounded
  EXPECT_EQ(rope_element(true, h2, 0, 2, c, s), round_bf16(round_bf16(h2[0] * c) + round_bf16(-h2[1] * s)));
}

TEST(ScalarMath, RmsInverseIsPowMinusHalfOfTheMeanPlusEps) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(1e-6, 1e4);
  for (int i = 0; i < 10000; ++i) {
    const double sum = u(rng);
    const int64_t dim = 1 + static_cast<int64_t>(rng() % 1000);
    const float eps = 1e-6f;
    const float mean_sq = static_cast<float>(sum / static_cast<double>(dim)) + eps;
    const float got = rms_inverse(sum, dim, eps);
    EXPECT_EQ(got, std::pow(mean_sq, -0.5f));
    EXPECT_LE(ulp_distance(got, static_cast<float>(1.0 / std::sqrt(static_cast<double>(mean_sq)))), 1) << sum << " " << dim;
  }
  const float w[2] = {2.0f, 0.5f};
  EXPECT_EQ(rms_element(false, 3.0f, 0.25f, w, 1), 3.0f * 0.25f * 0.5f);
  EXPECT_EQ(rms_element(false, 3.0f, 0.25f, nullptr, 1), 0.75f);  // weightless norm
  EXPECT_EQ(rms_element(true, 1.0f + 0x1p-9f, 1.0f, nullptr, 0), 1.0f);
}

TEST(ScalarMath, ExpertAddRoundsTheWeightedOutputThenTheSum) {
  // bf16: 1 + round(2^-8 · 1.5) = 1 + 2^-8·1.5 -> rounds up to 1 + 2^-7; fp32 keeps it exact.
  EXPECT_EQ(expert_add(true, 1.0f, 0x1p-8f, 1.5f), 1.0f + 0x1p-7f);
  EXPECT_EQ(expert_add(false, 1.0f, 0x1p-8f, 1.5f), 1.0f + 1.5f * 0x1p-8f);
  // The product is rounded before the add: y·w = 1 + 2^-9 (not bf16) rounds to 1, so 2 + 1 = 3 exactly.
  EXPECT_EQ(expert_add(true, 2.0f, 1.0f + 0x1p-9f, 1.0f), 3.0f);
  // Ascending order matters in bf16: (acc + a) + b != (acc + b) + a for these values.
  // (256 + 1.5 -> 258) + 1 -> 260 (tie to even); (256 + 1 -> 256) + 1.5 -> 258.
  EXPECT_EQ(expert_add(true, expert_add(true, 256.0f, 1.5f, 1.0f), 1.0f, 1.0f), 260.0f);
  EXPECT_EQ(expert_add(true, expert_add(true, 256.0f, 1.0f, 1.0f), 1.5f, 1.0f), 258.0f);
}

}  // namespace
}  // namespace g4::forward::scalar
