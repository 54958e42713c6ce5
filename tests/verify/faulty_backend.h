// Forward bugs planted in a backend for verify's tests (issue 5): a decorator over a real backend that runs every
// op unchanged except the ones a fault names. The faults are those other converters' forwards have shipped
// (pitfalls.md): the final softcap skipped or applied twice, the sliding window off by one, and RoPE applied to
// the first 2·n_rot dims of each head of a full (proportional-RoPE) layer instead of the strided pairs.
// verify runs the Megatron side on it (VerifyOptions::megatron_backend); the HF side stays clean.
#pragma once

#include <memory>
#include <numeric>

#include "forward/forwarding_backend.h"

namespace g4::verify::planted {

struct FaultInjection {
  int softcap_times = 1;
  int sliding_window_delta = 0;
  bool rope_first_dims = false;
};

class FaultyBackend : public forward::ForwardingBackend {
 public:
  using Tensor = forward::Tensor;
  using Precision = forward::Precision;

  FaultyBackend(forward::Backend& inner, FaultInjection faults) : ForwardingBackend(inner), in_(inner), f_(faults) {}
  std::string describe() const override { return "faulty(" + in_.describe() + ")"; }

  // Gemma 4 softcaps only the final logits, so every call here is the head's.
  void softcap(Tensor& x, float cap, const Precision& p) override {
    for (int i = 0; i < f_.softcap_times; ++i) in_.softcap(x, cap, p);
  }

  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t qh, int64_t kvh, int64_t hd,
                   const forward::AttentionMask& mask, const Precision& p) override {
    if (!mask.window || f_.sliding_window_delta == 0) return in_.attention(q, k, v, qh, kvh, hd, mask, p);
    forward::AttentionMask off = mask;
    *off.window += f_.sliding_window_delta;
    return in_.attention(q, k, v, qh, kvh, hd, off, p);
  }

  // A full layer's table has trailing zero-frequency pairs (sin 0 at every position); a sliding layer's has none.
  void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) override {
    const int64_t live = f_.rope_first_dims ? live_pairs(sin, hd) : hd / 2;
    if (live == hd / 2) return in_.rope(x, hd, cos, sin, p);
    // The short head of 2·live dims with frequencies [0, live) in both halves, as rotate_half pairs them.
    std::vector<int64_t> table(static_cast<size_t>(2 * live));
    for (int64_t j = 0; j < 2 * live; ++j) table[static_cast<size_t>(j)] = j % live;
    const Tensor c = in_.select_columns(cos, table), s = in_.select_columns(sin, table);
    for (int64_t h = 0; h < x.cols() / hd; ++h) {
      std::vector<int64_t> dims(static_cast<size_t>(2 * live));
      std::iota(dims.begin(), dims.end(), h * hd);
      Tensor part = in_.select_columns(x, dims);
      in_.rope(part, 2 * live, c, s, p);
      in_.write_columns(x, h * hd, part);
    }
  }

 private:
  int64_t live_pairs(const Tensor& sin, int64_t hd) {
    const forward::Mat s = in_.download(sin);
    int64_t live = 0;
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t t = 0; t < s.rows; ++t)
        if (s.row(t)[i] != 0.0f) {
          live = i + 1;
          break;
        }
    return live;
  }

  forward::Backend& in_;
  FaultInjection f_;
};

}  // namespace g4::verify::planted
