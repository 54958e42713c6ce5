#include "forward/rope.h"

#include <cmath>

namespace g4::forward {

std::vector<float> rope_inv_freq(const gemma4::RopeParameters& params, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  int64_t live = half;
  if (params.rope_type == "proportional") {
    // int(rope_proportion * head_dim // 2): Python evaluates (prf * hd) // 2 on floats.
    live = static_cast<int64_t>(std::floor(params.partial_rotary_factor.value_or(1.0) * static_cast<double>(head_dim) / 2.0));
    live = std::min(live, half);
  }
  std::vector<float> inv(static_cast<size_t>(half), 0.0f);
  const float base = static_cast<float>(params.rope_theta);
  for (int64_t i = 0; i < live; ++i) {
    // 1.0 / (base ** (arange(0, 2·live, 2).float() / hd)), all in fp32.
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[static_cast<size_t>(i)] = 1.0f / static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
  }
  if (params.factor) {
    for (float& f : inv) f /= static_cast<float>(*params.factor);
  }
  return inv;
}

void rope_tables(const std::vector<float>& inv_freq, const std::vector<int64_t>& positions, const Precision& p, Mat& cos,
                 Mat& sin) {
  const int64_t half = static_cast<int64_t>(inv_freq.size()), hd = 2 * half, T = static_cast<int64_t>(positions.size());
  cos = Mat(T, hd);
  sin = Mat(T, hd);
  for (int64_t t = 0; t < T; ++t) {
    const float pos = static_cast<float>(positions[static_cast<size_t>(t)]);
    for (int64_t i = 0; i < half; ++i) {
      float angle = pos * inv_freq[static_cast<size_t>(i)];  // fp32 product, as torch computes freqs
      float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      cos.row(t)[i] = cos.row(t)[i + half] = p.round(c);
      sin.row(t)[i] = sin.row(t)[i + half] = p.round(s);
    }
  }
}

}  // namespace g4::forward
