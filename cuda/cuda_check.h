// CUDA and cuBLAS failures inside an op. The op API returns tensors, not Status: a failing CUDA call there is a
// device fault or exhausted device memory, not bad input, so it stops with the call and the runtime's reason.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace g4::cuda {

[[noreturn]] void cuda_failed(const char* file, int line, const char* call, const char* reason);

}  // namespace g4::cuda

#define G4_CUDA_CHECK(call)                                                                  \
  do {                                                                                       \
    const cudaError_t g4_cuda_err_ = (call);                                                 \
    if (g4_cuda_err_ != cudaSuccess)                                                         \
      ::g4::cuda::cuda_failed(__FILE__, __LINE__, #call, cudaGetErrorString(g4_cuda_err_)); \
  } while (0)

#define G4_CUBLAS_CHECK(call)                                                                      \
  do {                                                                                             \
    const cublasStatus_t g4_cublas_st_ = (call);                                                   \
    if (g4_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::g4::cuda::cuda_failed(__FILE__, __LINE__, #call, cublasGetStatusString(g4_cublas_st_)); \
  } while (0)

// After a kernel launch: a bad launch configuration shows here, a fault in the kernel at the next synchronisation.
#define G4_CUDA_LAUNCHED() G4_CUDA_CHECK(cudaGetLastError())
