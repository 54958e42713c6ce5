// The CUDA GEMM and weight upload: no TF32 (a canary against an fp64 host GEMM), weights through the pinned
// staging in several chunks arrive exactly, and the backend says what it runs on. Skipped without a GPU, except
// the no-device message, which is checked wherever there is no GPU.
#include <cmath>

#include "cuda/cuda_test_support.h"
#include "forward/column_major_gemm.h"
#include "forward/gemm_mapping.h"

namespace g4::forward::testing {
namespace {

using CudaGemm = CudaVsCpu;

TEST(CudaBackendAvailability, WithoutADeviceIsAOneLineErrorNamingTheFlag) {
  auto made = make_cuda_backend();
  if (made.ok()) {
    const std::string d = (*made)->describe();
    EXPECT_EQ(d.rfind("cuda: ", 0), 0u) << d;
    EXPECT_NE(d.find("sm_"), std::string::npos) << d;
    EXPECT_NE(d.find("cuBLAS"), std::string::npos) << d;
    return;
  }
  const std::string& m = made.status().message();
  EXPECT_EQ(m.rfind("--device cuda: ", 0), 0u) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_EQ(made.status().code(), ErrorCode::kNotSupported);
}

// TF32 keeps 10 mantissa bits: operands 1 + j·2^-20 would lose their low bits (an error of ~1e-3 relative in the
// sum of differences below); fp32 compute keeps them to ~1e-7.
TEST_F(CudaGemm, Fp32LinearIsNotTf32AgainstAnFp64HostGemm) {
  const int64_t T = 3, N = 5, K = 256;
  Mat x(T, K), w(N, K);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) x.row(t)[k] = 1.0f + static_cast<float>((k * 7 + t) % 64) * 0x1p-20f;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) w.row(n)[k] = (k % 2 ? 1.0f : -1.0f) * (1.0f + static_cast<float>((k * 3 + n) % 32) * 0x1p-19f);
  const Mat got = cuda->download(cuda->linear(cuda->upload(x), cuda->weight(host_tensor(w, DType::kF32), kF32), kF32));
  std::vector<double> ref(static_cast<size_t>(T * N));
  const GemmArgs g = linear_gemm_args(T, N, K);
  column_major_gemm(g.transa, g.transb, g.m, g.n, g.k, 1.0, w.v.data(), g.lda, x.v.data(), g.ldb, 0.0, ref.data(), g.ldc);
  // The alternating signs cancel the 1s: each result (1.2e-4 .. 3.7e-4) is made of the low mantissa bits alone,
  // which TF32 rounds away entirely (an error of the whole value), while an fp32 sum errs by ~2e-8 (numpy).
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_GT(std::abs(ref[i]), 1e-4) << i;
    EXPECT_LE(std::abs(got.v[i] - ref[i]), 2e-6) << i << ": " << got.v[i] << " vs " << ref[i];
  }
}

// x = I reads each weight element back through the GEMM exactly (one nonzero product per output).
Mat read_back(Backend& b, const Tensor& w_device, int64_t K, const Precision& p) {
  Mat eye(K, K);
  for (int64_t i = 0; i < K; ++i) eye.row(i)[i] = 1.0f;
  return b.download(b.linear(b.upload(eye), w_device, p));  // [K, N] = wᵀ
}

TEST_F(CudaGemm, WeightsCrossThePinnedStagingInChunksExactly) {
  // 2100 × 4200 f32 = 35 MB: two chunks of the 32 MiB staging buffers, the second partial.
  const int64_t N = 2100, K = 4200;
  const Mat w = random_mat(N, K, 50, 1.0f);
  const Mat wb = random_mat(N, K, 51, 1.0f, true);
  struct Case {
    const Mat& values;
    DType stored;
    const Precision& p;
  };
  for (const Case& c : {Case{w, DType::kF32, kF32}, Case{w, DType::kF32, kBF16}, Case{wb, DType::kBF16, kF32}, Case{wb, DType::kBF16, kBF16}}) {
    const Tensor dev = cuda->weight(host_tensor(c.values, c.stored), c.p);
    EXPECT_EQ(dev.dtype(), c.p.bf16() ? DType::kBF16 : DType::kF32);
    const Mat back = read_back(*cuda, dev, K, c.p);
    size_t bad = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        if (back.row(k)[n] != c.p.round(c.values.row(n)[k])) ++bad;  // f32 -> bf16 rounds to nearest even once
    EXPECT_EQ(bad, 0u) << "stored " << dtype_name(c.stored) << " bf16=" << c.p.bf16();
  }
}

}  // namespace
}  // namespace g4::forward::testing
