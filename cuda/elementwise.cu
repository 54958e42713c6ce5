// One thread per element; each element's maths is scalar_math.h's, so it is the CPU backend's to the bit
// (gelu_tanh and softcap call tanhf, whose device version may differ from glibc's by an ulp or two).
#include "cuda_check.h"
#include "forward/scalar_math.h"
#include "kernels.h"
#include "launch.h"

namespace g4::cuda {
namespace sc = forward::scalar;
namespace {

__global__ void round_kernel(float* x, int64_t n) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_bf16(x[i]);
}

__global__ void to_bf16_kernel(const float* x, uint16_t* out, int64_t n) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) out[i] = sc::bf16_bits(x[i]);
}

__global__ void from_bf16_kernel(const uint16_t* x, float* out, int64_t n) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) out[i] = sc::bf16_value(x[i]);
}

__global__ void gelu_kernel(float* x, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_if(bf16, sc::gelu_tanh(x[i]));
}

__global__ void geglu_kernel(float* gate, const float* up, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) gate[i] = sc::geglu(bf16, gate[i], up[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_if(bf16, x[i] + y[i]);
}

__global__ void mul_kernel(float* x, const float* y, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_if(bf16, x[i] * y[i]);
}

__global__ void scale_kernel(float* x, float factor, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_if(bf16, x[i] * factor);
}

__global__ void scale_columns_kernel(float* x, const float* v, int64_t n, int64_t cols, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::round_if(bf16, x[i] * v[i % cols]);
}

__global__ void softcap_kernel(float* x, float cap, int64_t n, bool bf16) {
  const int64_t i = G4_ELEMENT_INDEX();
  if (i < n) x[i] = sc::softcap(bf16, x[i], cap);
}

}  // namespace

// Empty launches are skipped: a grid of zero blocks is a launch error.
#define G4_LAUNCH_ELEMENTS(kernel, n, s, ...)                 \
  do {                                                        \
    if ((n) <= 0) return;                                     \
    kernel<<<blocks_for(n), kThreads, 0, s>>>(__VA_ARGS__);   \
    G4_CUDA_LAUNCHED();                                       \
  } while (0)

void round_bf16(float* x, int64_t n, cudaStream_t s) { G4_LAUNCH_ELEMENTS(round_kernel, n, s, x, n); }
void f32_to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t s) { G4_LAUNCH_ELEMENTS(to_bf16_kernel, n, s, x, out, n); }
void bf16_to_f32(const uint16_t* x, float* out, int64_t n, cudaStream_t s) { G4_LAUNCH_ELEMENTS(from_bf16_kernel, n, s, x, out, n); }
void gelu_tanh(float* x, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(gelu_kernel, n, s, x, n, bf16); }
void geglu(float* gate, const float* up, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(geglu_kernel, n, s, gate, up, n, bf16); }
void add(float* x, const float* y, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(add_kernel, n, s, x, y, n, bf16); }
void mul(float* x, const float* y, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(mul_kernel, n, s, x, y, n, bf16); }
void scale(float* x, float factor, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(scale_kernel, n, s, x, factor, n, bf16); }
void scale_columns(float* x, const float* v, int64_t rows, int64_t cols, bool bf16, cudaStream_t s) {
  const int64_t n = rows * cols;
  G4_LAUNCH_ELEMENTS(scale_columns_kernel, n, s, x, v, n, cols, bf16);
}
void softcap(float* x, float cap, int64_t n, bool bf16, cudaStream_t s) { G4_LAUNCH_ELEMENTS(softcap_kernel, n, s, x, cap, n, bf16); }

}  // namespace g4::cuda
