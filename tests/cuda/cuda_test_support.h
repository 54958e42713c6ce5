// Shared by the CUDA-vs-CPU tests (llama.cpp test-backend-ops style, cuda-forward.md B.4/B.6): both backends, random
// inputs, and the comparisons with B.6's thresholds. Without a GPU (or without CUDA in the build) every test using
// CudaVsCpu skips, visibly: ctest reports it as skipped (CMakeLists.txt's SKIP_REGULAR_EXPRESSION).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "forward/cuda_backend.h"
#include "forward/ops.h"
#include "forward/scalar_math.h"

namespace g4::forward::testing {

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = make_cuda_backend();
    if (!made.ok()) GTEST_SKIP() << "no GPU to test on: " << made.status().message();
    cuda = std::move(made).value();
    cpu = make_cpu_backend(true);
  }
  std::unique_ptr<Backend> cpu, cuda;
};

inline const Precision kF32{ComputeMode::kF32};
inline const Precision kBF16{ComputeMode::kBF16};

// Uniform in [-scale, scale), bf16-rounded when `bf16` (the values a bf16 model hands an op).
inline Mat random_mat(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.0f, bool bf16 = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  Mat m(rows, cols);
  for (float& v : m.v) v = scalar::round_if(bf16, u(rng));
  return m;
}

// A host tensor (f32 or bf16 storage) of m's values, as a checkpoint's weight would be.
inline Tensor host_tensor(const Mat& m, DType dtype) {
  Tensor t = Tensor::host(dtype, m.rows, m.cols);
  for (size_t i = 0; i < m.v.size(); ++i) {
    if (dtype == DType::kBF16)
      t.data<uint16_t>()[i] = scalar::bf16_bits(m.v[i]);
    else
      t.f32()[i] = m.v[i];
  }
  return t;
}

inline int64_t ulp_distance(float a, float b) {
  auto key = [](float x) {
    const int32_t i = static_cast<int32_t>(scalar::float_bits(x));
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::llabs(key(a) - key(b));
}

// B.6 fp32: NMSE <= 1e-12 and max relative error <= 1e-5 (relative to max(|ref|, 1e-3·max|ref|), so that values
// cancelling to near zero are judged against the output's scale).
inline ::testing::AssertionResult close_f32(const Mat& ref, const Mat& got, double nmse_max = 1e-12, double rel_max = 1e-5) {
  if (ref.rows != got.rows || ref.cols != got.cols) return ::testing::AssertionFailure() << "shape differs";
  double err = 0, norm = 0, scale = 0, worst = 0;
  size_t worst_at = 0;
  for (float v : ref.v) scale = std::max(scale, std::abs(double(v)));
  for (size_t i = 0; i < ref.v.size(); ++i) {
    const double d = double(got.v[i]) - ref.v[i];
    if (!std::isfinite(got.v[i]) && got.v[i] != ref.v[i]) return ::testing::AssertionFailure() << "non-finite at " << i;
    err += d * d, norm += double(ref.v[i]) * ref.v[i];
    const double rel = std::abs(d) / std::max(std::abs(double(ref.v[i])), 1e-3 * scale + 1e-30);
    if (rel > worst) worst = rel, worst_at = i;
  }
  const double nmse = norm > 0 ? err / norm : err;
  if (nmse > nmse_max || worst > rel_max)
    return ::testing::AssertionFailure() << "nmse " << nmse << ", max rel " << worst << " at " << worst_at << " (cpu " << ref.v[worst_at]
                                         << ", cuda " << got.v[worst_at] << ")";
  return ::testing::AssertionSuccess();
}

// B.6 bf16: every element within 1 bf16 ulp, and at most `frac` of them 1 ulp apart (the rest identical).
inline ::testing::AssertionResult close_bf16(const Mat& ref, const Mat& got, double frac = 0.01) {
  if (ref.rows != got.rows || ref.cols != got.cols) return ::testing::AssertionFailure() << "shape differs";
  size_t one = 0;
  for (size_t i = 0; i < ref.v.size(); ++i) {
    if (scalar::round_bf16(got.v[i]) != got.v[i]) return ::testing::AssertionFailure() << "not a bf16 value at " << i;
    const int64_t d = ulp_distance(ref.v[i], got.v[i]) >> 16;  // in bf16 ulps (both are bf16 values)
    if (d > 1) return ::testing::AssertionFailure() << d << " bf16 ulps at " << i << " (cpu " << ref.v[i] << ", cuda " << got.v[i] << ")";
    one += d;
  }
  if (double(one) > frac * double(ref.v.size()) + 1)
    return ::testing::AssertionFailure() << one << " of " << ref.v.size() << " elements 1 ulp apart";
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult close(const Precision& p, const Mat& ref, const Mat& got) {
  return p.bf16() ? close_bf16(ref, got) : close_f32(ref, got);
}

// B.6's second bf16 condition: wherever both backends' fp32 results agree exactly, their bf16 results must too
// (for ops with one rounding point, whose bf16 result is the rounded fp32 one).
inline ::testing::AssertionResult same_where_f32_agrees(const Mat& cpu32, const Mat& cuda32, const Mat& cpu16, const Mat& cuda16) {
  size_t agree = 0;
  for (size_t i = 0; i < cpu32.v.size(); ++i) {
    if (scalar::float_bits(cpu32.v[i]) != scalar::float_bits(cuda32.v[i])) continue;
    ++agree;
    if (scalar::float_bits(cpu16.v[i]) != scalar::float_bits(cuda16.v[i]))
      return ::testing::AssertionFailure() << "fp32 results agree at " << i << " but bf16 ones differ: " << cpu16.v[i] << " vs " << cuda16.v[i];
  }
  return ::testing::AssertionSuccess() << agree << " agreeing elements";
}

inline bool bitwise_equal(const Mat& a, const Mat& b) {
  return a.rows == b.rows && a.cols == b.cols && std::memcmp(a.v.data(), b.v.data(), a.v.size() * sizeof(float)) == 0;
}

}  // namespace g4::forward::testing
