// A backend that runs every op on another one: the base of decorators that watch or change a few ops (the op
// profile of forward --profile, timing_backend.h; the planted faults of verify's tests). The grouped expert op is
// not forwarded: Backend::experts runs here, in this backend's ops, so a decorator sees the ops inside it too
// (no backend overrides it today; one that does would be measured through the shared version).
#pragma once

#include <string>
#include <vector>

#include "forward/ops.h"

namespace g4::forward {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : in_(inner) {}

  Device device() const override { return in_.device(); }
  std::string describe() const override { return in_.describe(); }
  void synchronize() override { in_.synchronize(); }
  Tensor empty(int64_t r, int64_t c) override { return in_.empty(r, c); }
  Tensor zeros(int64_t r, int64_t c) override { return in_.zeros(r, c); }
  Tensor upload(const Mat& m) override { return in_.upload(m); }
  Mat download(const Tensor& x) override { return in_.download(x); }
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
  void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) override { in_.rope(x, hd, cos, sin, p); }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t qh, int64_t kvh, int64_t hd, const AttentionMask& mask,
                   const Precision& p) override {
    return in_.attention(q, k, v, qh, kvh, hd, mask, p);
  }
  void gelu_tanh_mul(Tensor& g, const Tensor& u, const Precision& p) override { in_.gelu_tanh_mul(g, u, p); }
  void gelu_tanh(Tensor& x, const Precision& p) override { in_.gelu_tanh(x, p); }
  void add(Tensor& x, const Tensor& y, const Precision& p) override { in_.add(x, y, p); }
  void mul(Tensor& x, const Tensor& y, const Precision& p) override { in_.mul(x, y, p); }
  void scale(Tensor& x, float s, const Precision& p) override { in_.scale(x, s, p); }
  void scale_columns(Tensor& x, const Tensor& v, const Precision& p) override { in_.scale_columns(x, v, p); }
  void softcap(Tensor& x, float cap, const Precision& p) override { in_.softcap(x, cap, p); }

 protected:
  Backend& inner() { return in_; }

 private:
  Backend& in_;
};

}  // namespace g4::forward
