// A row-major f32 matrix: the one activation type of the reference forward. Values are f32 in both
// compute modes; in bf16 mode they are rounded to bf16 where transformers rounds (precision.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace g4::forward {

struct Mat {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> v;

  Mat() = default;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), v(static_cast<size_t>(r * c), 0.0f) {}

  float* row(int64_t r) { return v.data() + r * cols; }
  const float* row(int64_t r) const { return v.data() + r * cols; }
  std::span<float> span() { return v; }
  std::span<const float> span() const { return v; }
};

}  // namespace g4::forward
