// The cuBLAS argument mapping of the CUDA linear (gemm_mapping.h) on the host: the column-major GEMM of cuBLAS's
// contract (column_major_gemm.h), given exactly those arguments and the row-major buffers, reproduces a naive
// row-major x·wᵀ on odd sizes; and the check can tell: each plausible slip (transposes swapped, leading dims
// swapped, m and n swapped) does not reproduce it.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "forward/column_major_gemm.h"
#include "forward/gemm_mapping.h"

namespace g4::forward {
namespace {

struct Case {
  int64_t T, N, K;
  std::vector<float> x, w;  // row-major [T, K], [N, K]
  std::vector<double> ref;  // row-major [T, N]
};

Case make_case(int64_t T, int64_t N, int64_t K) {
  std::mt19937 rng(static_cast<uint32_t>(T * 1000003 + N * 1009 + K));
  std::uniform_real_distribution<float> u(-1, 1);
  Case c{T, N, K, std::vector<float>(static_cast<size_t>(T * K)), std::vector<float>(static_cast<size_t>(N * K)),
         std::vector<double>(static_cast<size_t>(T * N))};
  for (float& v : c.x) v = u(rng);
  for (float& v : c.w) v = u(rng);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(c.x[size_t(t * K + k)]) * c.w[size_t(n * K + k)];
      c.ref[size_t(t * N + n)] = acc;
    }
  return c;
}

// Highest element a column-major operand of `rows`×`cols` (as op() sees it) touches with leading dim ld.
int64_t last_index(bool trans, int64_t rows, int64_t cols, int64_t ld) {
  return trans ? (cols - 1) + (rows - 1) * ld : (rows - 1) + (cols - 1) * ld;
}

// Whether cuBLAS, given `g` and the row-major buffers (A = w, B = x, C = out), would compute x·wᵀ. Arguments that
// would read or write outside the buffers (cuBLAS would too) count as not reproducing it.
bool reproduces(const Case& c, const GemmArgs& g) {
  const int64_t out_size = c.T * c.N;
  if (g.m * g.n != out_size || g.k <= 0) return false;
  if (last_index(g.transa, g.m, g.k, g.lda) >= int64_t(c.w.size())) return false;
  if (last_index(g.transb, g.k, g.n, g.ldb) >= int64_t(c.x.size())) return false;
  if (last_index(false, g.m, g.n, g.ldc) >= out_size) return false;
  if (g.lda < (g.transa ? g.k : g.m) || g.ldb < (g.transb ? g.n : g.k) || g.ldc < g.m) return false;  // cuBLAS refuses
  std::vector<double> out(static_cast<size_t>(out_size), 0.0);
  testing::column_major_gemm(g.transa, g.transb, g.m, g.n, g.k, 1.0, c.w.data(), g.lda, c.x.data(), g.ldb, 0.0, out.data(), g.ldc);
  for (size_t i = 0; i < out.size(); ++i)
    if (std::abs(out[i] - c.ref[i]) > 1e-12 * (1 + std::abs(c.ref[i]))) return false;
  return true;
}

TEST(GemmMapping, LinearArgumentsReproduceRowMajorXTimesWTransposedOnOddSizes) {
  for (int64_t T : {1, 7})
    for (int64_t N : {5, 769})
      for (int64_t K : {3, 33}) {
        const Case c = make_case(T, N, K);
        EXPECT_TRUE(reproduces(c, linear_gemm_args(T, N, K))) << "T=" << T << " N=" << N << " K=" << K;
      }
}

TEST(GemmMapping, EachSwappedArgumentFailsToReproduce) {
  const Case c = make_case(7, 5, 33);
  const GemmArgs good = linear_gemm_args(7, 5, 33);
  ASSERT_TRUE(reproduces(c, good));
  GemmArgs g = good;
  std::swap(g.transa, g.transb);
  EXPECT_FALSE(reproduces(c, g)) << "transa/transb swapped";
  g = good, g.transa = false;
  EXPECT_FALSE(reproduces(c, g)) << "A not transposed";
  g = good, g.transb = true;
  EXPECT_FALSE(reproduces(c, g)) << "B transposed";
  g = good, std::swap(g.lda, g.ldc);
  EXPECT_FALSE(reproduces(c, g)) << "lda/ldc swapped";
  g = good, g.lda = g.m;
  EXPECT_FALSE(reproduces(c, g)) << "lda = m";
  g = good, g.ldc = g.n;
  EXPECT_FALSE(reproduces(c, g)) << "ldc = n";
  g = good, std::swap(g.m, g.n);
  EXPECT_FALSE(reproduces(c, g)) << "m/n swapped";
}

}  // namespace
}  // namespace g4::forward
