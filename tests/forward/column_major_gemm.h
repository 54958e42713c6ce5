// A host GEMM that follows cuBLAS's documented contract (cublas<t>gemm): C = alpha·op(A)·op(B) + beta·C with op(A)
// m×k, op(B) k×n, C m×n, all column-major; element (r, c) of a matrix with leading dimension ld is at r + c·ld, and A
// is stored k×m when transposed (m×k otherwise). Accumulates in double: the tests' reference for the GEMM mapping
// (gemm_mapping.h) and for the GPU's fp32 GEMM.
#pragma once

#include <cstdint>
#include <vector>

namespace g4::forward::testing {

template <class TA, class TB>
void column_major_gemm(bool transa, bool transb, int64_t m, int64_t n, int64_t k, double alpha, const TA* A, int64_t lda,
                       const TB* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  for (int64_t c = 0; c < n; ++c)
    for (int64_t r = 0; r < m; ++r) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double a = transa ? A[i + r * lda] : A[r + i * lda];  // op(A)(r, i)
        const double b = transb ? B[c + i * ldb] : B[i + c * ldb];  // op(B)(i, c)
        acc += a * b;
      }
      C[r + c * ldc] = alpha * acc + beta * C[r + c * ldc];
    }
}

}  // namespace g4::forward::testing
