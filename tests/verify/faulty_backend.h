// Forward bugs planted in a backend for verify's tests (issue 5): a decorator over a real backend that runs every
// op unchanged except the ones a fault names. The faults are those other converters' forwards have shipped
// (pitfalls.md): the final softcap skipped or applied twice, the sliding window off by one, and RoPE applied to
// the first 2·n_rot dims of each head of a full (proportional-RoPE) layer instead of the strided pairs.
// verify runs the Megatron side on it (VerifyOptions::megatron_backend); the HF side stays clean.
#pragma once

#include <memory>
#include <numeric>

#include "forward/ops.h"

namespace g4::verify::planted {

struct FaultInjection {
  int softcap_times = 1;
  int sliding_window_delta = 0;
  bool rope_first_dims = false;
};

class FaultyBackend : public forward::Backend {
 public:
  using Tensor = forward::Tensor;
  using Precision = forward::Precision;

  FaultyBackend(forward::Backend& inner, FaultInjection faults) : in_(inner), f_(faults) {}

  forward::Device device() const override { return in_.device(); }
  std::string describe() const override { return "faulty(" + in_.describe() + ")"; }
  Tensor empty(int64_t r, int64_t c) override { return in_.empty(r, c); }
  Tensor zeros(int64_t r, int64_t c) override { return in_.zeros(r, c); }
  Tensor upload(const forward::Mat& m) override { return in_.upload(m); }
  forward::Mat download(const Tensor& x) override { return in_.download(x); }
  Tensor weight(const Tensor& h, const Precision& p) override { return in_.weight(h, p); }
  Tensor parameter(const std::vector<float>& v, const Precision& p) override { return in_.parameter(v, p); }
  Tensor copy(const Tensor& x) override { return in_.copy(x); }
  Tensor select_columns(const Tensor& x, std::span<const int64_t> i) override { return in_.select_columns(x, i); }
  void write_columns(Tensor& x, int64_t first, const Tensor& part) override { in_.write_columns(x, first, part); }
  Tensor gather_rows(const Tensor& x, std::span<const int64_t> rows) override { return in_.gather_rows(x, rows); }
  void scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> w,
                        const Precision& p) override {
    in_.scatter_add_rows(out, y, rows, w, p);
  }
  Tensor linear(const Tensor& x, const Tensor& w, const Precision& p) override { return in_.linear(x, w, p); }
  void rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) override { in_.rms_norm(x, w, dim, eps, p); }
  void gelu_tanh_mul(Tensor& g, const Tensor& u, const Precision& p) override { in_.gelu_tanh_mul(g, u, p); }
  void gelu_tanh(Tensor& x, const Precision& p) override { in_.gelu_tanh(x, p); }
  void add(Tensor& x, const Tensor& y, const Precision& p) override { in_.add(x, y, p); }
  void mul(Tensor& x, const Tensor& y, const Precision& p) override { in_.mul(x, y, p); }
  void scale(Tensor& x, float s, const Precision& p) override { in_.scale(x, s, p); }
  void scale_columns(Tensor& x, const Tensor& v, const Precision& p) override { in_.scale_columns(x, v, p); }

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
