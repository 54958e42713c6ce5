// RMSNorm: one block per run of `dim` values. The sum of squares is taken in double, as the CPU backend does, each
// thread over a fixed stride of elements and then a fixed-order tree in shared memory, so it is the same sum on
// every run; the factor and each element are scalar_math.h's.
#include "cuda_check.h"
#include "forward/scalar_math.h"
#include "kernels.h"
#include "launch.h"

namespace g4::cuda {
namespace {

__global__ void rms_norm_kernel(float* x, const float* w, int64_t dim, float eps, bool bf16) {
  __shared__ double partial[kThreads];
  float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += static_cast<double>(row[i]) * static_cast<double>(row[i]);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const float inv = forward::scalar::rms_inverse(partial[0], dim, eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) row[i] = forward::scalar::rms_element(bf16, row[i], inv, w, i);
}

}  // namespace

void rms_norm(float* x, const float* w, int64_t groups, int64_t dim, float eps, bool bf16, cudaStream_t s) {
  if (groups <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(groups), kThreads, 0, s>>>(x, w, dim, eps, bf16);
  G4_CUDA_LAUNCHED();
}

}  // namespace g4::cuda
