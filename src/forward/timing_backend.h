// forward --profile: a decorator that times every op of the backend it wraps (waiting for the device before and
// after each, so CUDA times are the ops' own, not their enqueueing) and prints the split, largest first. The ops
// inside the grouped expert op are listed as "experts/<op>".
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "forward/forwarding_backend.h"

namespace g4::forward {

class TimingBackend final : public ForwardingBackend {
 public:
  explicit TimingBackend(Backend& inner) : ForwardingBackend(inner) {}

  // One line per op: calls, seconds, share of `total_seconds` (the whole forward); then the time outside ops.
  std::string report(double total_seconds) const;

  Tensor weight(const Tensor& h, const Precision& p) override;
  Tensor parameter(const std::vector<float>& v, const Precision& p) override;
  Tensor upload(const Mat& m) override;
  Mat download(const Tensor& x) override;
  Tensor copy(const Tensor& x) override;
  Tensor select_columns(const Tensor& x, std::span<const int64_t> i) override;
  void write_columns(Tensor& x, int64_t first, const Tensor& part) override;
  Tensor gather_rows(const Tensor& x, std::span<const int64_t> rows) override;
  void scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> w,
                        const Precision& p) override;
  Tensor linear(const Tensor& x, const Tensor& w, const Precision& p) override;
  void rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) override;
  void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t qh, int64_t kvh, int64_t hd, const AttentionMask& mask,
                   const Precision& p) override;
  void gelu_tanh_mul(Tensor& g, const Tensor& u, const Precision& p) override;
  void gelu_tanh(Tensor& x, const Precision& p) override;
  void add(Tensor& x, const Tensor& y, const Precision& p) override;
  void mul(Tensor& x, const Tensor& y, const Precision& p) override;
  void scale(Tensor& x, float s, const Precision& p) override;
  void scale_columns(Tensor& x, const Tensor& v, const Precision& p) override;
  void softcap(Tensor& x, float cap, const Precision& p) override;
  Result<Tensor> experts(const Tensor& x, const Routing& route, ExpertWeights& weights, int64_t hidden, const Precision& p) override;

 private:
  struct Entry {
    int64_t calls = 0;
    double seconds = 0;
  };
  // Runs `op` between two device waits and adds its time to `name` (prefixed inside the expert op).
  template <class Op>
  decltype(auto) timed(const char* name, Op&& op);

  std::map<std::string, Entry> entries_;
  std::string scope_;  // "experts/" while the grouped expert op runs
};

}  // namespace g4::forward
