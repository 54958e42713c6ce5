// The linear's GEMM on cuBLAS: out[T,N] = x[T,K]·w[N,K]ᵀ with fp32 output and fp32 compute (CUBLAS_COMPUTE_32F,
// default math: no TF32, no BF16x9 emulation), arguments from forward/gemm_mapping.h. bf16 mode multiplies a bf16 w by
// x_bf16 (x converted on the device: exact, x holds bf16 values); the caller rounds the output (its epilogue).
#pragma once

#include <cublas_v2.h>

#include <cstdint>

namespace g4::cuda {

void gemm_f32(cublasHandle_t blas, const float* w, const float* x, float* out, int64_t tokens, int64_t out_features, int64_t in_features);
void gemm_bf16(cublasHandle_t blas, const uint16_t* w, const uint16_t* x_bf16, float* out, int64_t tokens, int64_t out_features,
               int64_t in_features);

}  // namespace g4::cuda
