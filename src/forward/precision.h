// The precision policy shared by every backend: fp32 mode accumulates and stores in fp32 throughout;
// bf16 mode computes each op in fp32 (as PyTorch's bf16 kernels do internally) and rounds its result to
// bf16 exactly where transformers 5.23 does for a model loaded with dtype=bfloat16.
//
// Rounding points in bf16 mode (modeling_gemma4.py, transformers 5.23):
//   embedding      E[id] * bf16(sqrt(H))                                 -> round
//   PLE            E_ple[id] * bf16(sqrt(D)) -> round; Pm(h0) -> round; * H^-0.5 -> round; norm -> round;
//                  (proj + raw) -> round; * 2^-0.5 -> round
//   RMSNorm        fp32 inside (mean of squares, pow -0.5, * w)          -> round once
//   Linear         fp32 accumulate                                       -> round
//   RoPE           cos/sin computed fp32 -> round; x*cos -> round; rotate_half(x)*sin -> round; sum -> round
//   attention      SDPA: scores, softmax and P·V in fp32                 -> round the output
//   GeGLU          gelu_tanh(gate) -> round; * up -> round
//   router         norm -> round; * scale -> round; * H^-0.5 -> round; proj -> round (bf16 logits);
//                  softmax/top-k/renormalise in fp32; * per_expert_scale in fp32
//   experts        gate_up -> round; gelu -> round; * up -> round; down -> round; * weight (fp32) -> round;
//                  summed into a bf16 accumulator in ascending expert order, rounding after each add
//   residual adds, * layer_scalar                                        -> round
//   head           logits -> round; / cap -> round; tanh -> round; * cap -> round
// Python-float constants (H^-0.5, 2^-0.5) are applied as f32 values, as PyTorch's opmath does; only the
// embedding scales are cast to bf16 first. inv_freq stays fp32 in both modes.
#pragma once

#include <bit>
#include <cstdint>
#include <span>

#include "forward/mat.h"
#include "forward/scalar_math.h"

namespace g4::forward {

enum class ComputeMode { kF32, kBF16 };

// f32 -> nearest-even bf16 -> f32, NaN kept (the shared scalar maths, scalar_math.h).
inline float round_to_bf16(float x) { return scalar::round_bf16(x); }

struct Precision {
  ComputeMode mode = ComputeMode::kF32;

  bool bf16() const { return mode == ComputeMode::kBF16; }
  float round(float x) const { return bf16() ? round_to_bf16(x) : x; }
  void round(std::span<float> xs) const {
    if (!bf16()) return;
    float* p = xs.data();
    const int64_t n = static_cast<int64_t>(xs.size());
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = round_to_bf16(p[i]);
  }
  void round(Mat& m) const { round(m.span()); }
};

}  // namespace g4::forward
