// RoPE with host-built tables: one thread per rotary pair (j, j + hd/2) of a head, which reads both inputs before
// writing both outputs, so the rotation runs in place; each output is scalar::rope_element.
#include "cuda_check.h"
#include "forward/scalar_math.h"
#include "kernels.h"
#include "launch.h"

namespace g4::cuda {
namespace {

__global__ void rope_kernel(float* x, int64_t tokens, int64_t heads, int64_t hd, const float* cos, const float* sin, bool bf16) {
  const int64_t half = hd / 2;
  const int64_t i = G4_ELEMENT_INDEX();
  if (i >= tokens * heads * half) return;
  const int64_t j = i % half, t = i / (heads * half), h = i / half % heads;
  float* head = x + (t * heads + h) * hd;
  const float* c = cos + t * hd;
  const float* s = sin + t * hd;
  const float lo = forward::scalar::rope_element(bf16, head, j, hd, c[j], s[j]);
  const float hi = forward::scalar::rope_element(bf16, head, j + half, hd, c[j + half], s[j + half]);
  head[j] = lo;
  head[j + half] = hi;
}

}  // namespace

void rope(float* x, int64_t tokens, int64_t heads, int64_t hd, const float* cos, const float* sin, bool bf16, cudaStream_t s) {
  const int64_t n = tokens * heads * (hd / 2);
  if (n <= 0) return;
  rope_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, tokens, heads, hd, cos, sin, bf16);
  G4_CUDA_LAUNCHED();
}

}  // namespace g4::cuda
