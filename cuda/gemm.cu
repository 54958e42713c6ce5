#include "gemm.h"

#include <climits>

#include "cuda_check.h"
#include "forward/gemm_mapping.h"
#include "runtime/status.h"

namespace g4::cuda {
namespace {

int as_int(int64_t v) {
  G4_CHECK(v >= 0 && v <= INT_MAX);  // cuBLAS's 32-bit API; no linear of the Gemma 4 family comes near
  return static_cast<int>(v);
}

void gemm(cublasHandle_t blas, const void* w, const void* x, cudaDataType in_type, float* out, int64_t tokens, int64_t out_features,
          int64_t in_features) {
  const forward::GemmArgs g = forward::linear_gemm_args(tokens, out_features, in_features);
  const float alpha = 1.0f, beta = 0.0f;
  G4_CUBLAS_CHECK(cublasGemmEx(blas, g.transa ? CUBLAS_OP_T : CUBLAS_OP_N, g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(g.m),
                               as_int(g.n), as_int(g.k), &alpha, w, in_type, as_int(g.lda), x, in_type, as_int(g.ldb), &beta, out,
                               CUDA_R_32F, as_int(g.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void gemm_f32(cublasHandle_t blas, const float* w, const float* x, float* out, int64_t tokens, int64_t out_features, int64_t in_features) {
  gemm(blas, w, x, CUDA_R_32F, out, tokens, out_features, in_features);
}

void gemm_bf16(cublasHandle_t blas, const uint16_t* w, const uint16_t* x_bf16, float* out, int64_t tokens, int64_t out_features,
               int64_t in_features) {
  gemm(blas, w, x_bf16, CUDA_R_16BF, out, tokens, out_features, in_features);
}

}  // namespace g4::cuda
