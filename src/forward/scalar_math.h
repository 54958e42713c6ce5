// The scalar maths every backend shares, written once as G4_HD functions: the CPU backend calls them through
// g++, the CUDA kernels through nvcc, and the unit tests check them on the host. Each is PyTorch's formula in its
// order of operations (transformers 5.23, torch 2.x CPU kernels), so the backends differ only in how they sum.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define G4_HD __host__ __device__
#else
#define G4_HD
#endif

namespace g4::forward::scalar {

G4_HD inline uint32_t float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

G4_HD inline float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// f32 -> nearest-even bf16 (as its upper 16 bits); NaN stays a quiet NaN with its sign.
G4_HD inline uint16_t bf16_bits(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u | 0x00400000u) >> 16);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

G4_HD inline float bf16_value(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

// f32 -> nearest-even bf16 -> f32.
G4_HD inline float round_bf16(float x) { return bf16_value(bf16_bits(x)); }

// Rounds when `bf16` (a bf16-mode rounding point of precision.h), else passes x through.
G4_HD inline float round_if(bool bf16, float x) { return bf16 ? round_bf16(x) : x; }

// F.gelu(x, approximate="tanh") in fp32, PyTorch's constant order.
G4_HD inline float gelu_tanh(float x) {
  const float kAlpha = 0.7978845608028654f;  // sqrt(2/pi)
  const float kBeta = 0.044715f;
  const float inner = kAlpha * (x + kBeta * x * x * x);
  return 0.5f * x * (1.0f + tanhf(inner));
}

// GeGLU element: round(round(gelu_tanh(gate)) · up).
G4_HD inline float geglu(bool bf16, float gate, float up) { return round_if(bf16, round_if(bf16, gelu_tanh(gate)) * up); }

// cap · tanh(x / cap), rounded after each of the three steps as transformers does in bf16.
G4_HD inline float softcap(bool bf16, float x, float cap) {
  return round_if(bf16, round_if(bf16, tanhf(round_if(bf16, x / cap))) * cap);
}

// RMSNorm's factor from the sum of squares of `dim` values: (mean + eps)^-0.5 as torch.pow(ms, -0.5) (not rsqrt).
G4_HD inline float rms_inverse(double sum_of_squares, int64_t dim, float eps) {
  const float mean_sq = static_cast<float>(sum_of_squares / static_cast<double>(dim)) + eps;
  return powf(mean_sq, -0.5f);
}

// One normed element: round(x · inv · w), w = 1 for the weightless norms (v_norm, router norm).
G4_HD inline float rms_element(bool bf16, float x, float inv, const float* w, int64_t i) {
  float v = x * inv;
  if (w) v *= w[i];
  return round_if(bf16, v);
}

// One rotary element j of a head of size hd (rotate_half pairs j with j ± hd/2): x·cos + rotate_half(x)·sin, rounded
// after each product and after the sum.
G4_HD inline float rope_element(bool bf16, const float* head, int64_t j, int64_t hd, float cos, float sin) {
  const int64_t half = hd / 2;
  const float rotated = j < half ? -head[j + half] : head[j - half];  // rotate_half: cat(-x2, x1)
  const float a = round_if(bf16, head[j] * cos);
  const float b = round_if(bf16, rotated * sin);
  return round_if(bf16, a + b);
}

// One routed expert's contribution added to the accumulator: bf16 index_add_ of round(y · weight).
G4_HD inline float expert_add(bool bf16, float acc, float y, float weight) { return round_if(bf16, acc + round_if(bf16, y * weight)); }

}  // namespace g4::forward::scalar
