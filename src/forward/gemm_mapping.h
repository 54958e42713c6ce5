// The row-major linear out[T,N] = x[T,K]·w[N,K]ᵀ as one column-major cuBLAS GEMM (cuda-forward.md B.2), stated once:
// the CUDA wrapper passes exactly these arguments, and tests/forward/gemm_mapping_test.cc checks them on the host
// against a GEMM that follows cuBLAS's contract (no GPU needed).
//
// Why it works: a row-major [R, C] buffer is the column-major [C, R] matrix. So w is column-major Wᶜ [K, N], x is
// xᶜ [K, T] and out is outᶜ [N, T]; out = x·wᵀ is outᶜ = (Wᶜ)ᵀ·xᶜ: op(A) = Aᵀ with A = w (lda = K), op(B) = B with
// B = x (ldb = K), C = out (ldc = N), m = N, n = T, k = K.
#pragma once

#include <cstdint>

namespace g4::forward {

struct GemmArgs {
  bool transa = false;  // op(A) = Aᵀ (CUBLAS_OP_T)
  bool transb = false;  // op(B) = Bᵀ
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

// A = w, B = x, C = out.
inline GemmArgs linear_gemm_args(int64_t tokens, int64_t out_features, int64_t in_features) {
  GemmArgs g;
  g.transa = true;
  g.transb = false;
  g.m = out_features;
  g.n = tokens;
  g.k = in_features;
  g.lda = in_features;
  g.ldb = in_features;
  g.ldc = out_features;
  return g;
}

}  // namespace g4::forward
