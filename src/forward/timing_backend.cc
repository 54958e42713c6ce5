#include "forward/timing_backend.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace g4::forward {

template <class Op>
decltype(auto) TimingBackend::timed(const char* name, Op&& op) {
  inner().synchronize();
  const auto start = std::chrono::steady_clock::now();
  struct Record {  // adds the time on every way out, the returning one included
    TimingBackend& self;
    std::string key;
    std::chrono::steady_clock::time_point start;
    ~Record() {
      self.inner().synchronize();
      Entry& e = self.entries_[key];
      e.calls += 1;
      e.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  } record{*this, scope_ + name, start};
  return op();
}

std::string TimingBackend::report(double total_seconds) const {
  std::vector<std::pair<std::string, Entry>> rows(entries_.begin(), entries_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  std::string out = "op profile (" + describe() + "), " + std::to_string(total_seconds).substr(0, 6) + " s in all:\n";
  double in_ops = 0;
  char line[160];
  for (const auto& [name, e] : rows) {
    if (name.rfind("experts/", 0) != 0) in_ops += e.seconds;  // nested ops are inside "experts"
    std::snprintf(line, sizeof line, "  %-26s %8lld calls %9.3f s %6.1f%%\n", name.c_str(), static_cast<long long>(e.calls), e.seconds,
                  total_seconds > 0 ? 100 * e.seconds / total_seconds : 0.0);
    out += line;
  }
  const double other = std::max(0.0, total_seconds - in_ops);
  std::snprintf(line, sizeof line, "  %-26s %14s %9.3f s %6.1f%%\n", "outside ops (host)", "", other,
                total_seconds > 0 ? 100 * other / total_seconds : 0.0);
  return out + line;
}

Tensor TimingBackend::weight(const Tensor& h, const Precision& p) { return timed("weight", [&] { return inner().weight(h, p); }); }
Tensor TimingBackend::parameter(const std::vector<float>& v, const Precision& p) {
  return timed("parameter", [&] { return inner().parameter(v, p); });
}
Tensor TimingBackend::upload(const Mat& m) { return timed("upload", [&] { return inner().upload(m); }); }
Mat TimingBackend::download(const Tensor& x) { return timed("download", [&] { return inner().download(x); }); }
Tensor TimingBackend::copy(const Tensor& x) { return timed("copy", [&] { return inner().copy(x); }); }
Tensor TimingBackend::select_columns(const Tensor& x, std::span<const int64_t> i) {
  return timed("select_columns", [&] { return inner().select_columns(x, i); });
}
void TimingBackend::write_columns(Tensor& x, int64_t first, const Tensor& part) {
  timed("write_columns", [&] { inner().write_columns(x, first, part); });
}
Tensor TimingBackend::gather_rows(const Tensor& x, std::span<const int64_t> rows) {
  return timed("gather_rows", [&] { return inner().gather_rows(x, rows); });
}
void TimingBackend::scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> w,
                                     const Precision& p) {
  timed("scatter_add_rows", [&] { inner().scatter_add_rows(out, y, rows, w, p); });
}
Tensor TimingBackend::linear(const Tensor& x, const Tensor& w, const Precision& p) {
  return timed(w.dtype() == DType::kBF16 ? "linear (bf16 weight)" : "linear (f32 weight)", [&] { return inner().linear(x, w, p); });
}
void TimingBackend::rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) {
  timed("rms_norm", [&] { inner().rms_norm(x, w, dim, eps, p); });
}
void TimingBackend::rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) {
  timed("rope", [&] { inner().rope(x, hd, cos, sin, p); });
}
Tensor TimingBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t qh, int64_t kvh, int64_t hd,
                                const AttentionMask& mask, const Precision& p) {
  return timed("attention", [&] { return inner().attention(q, k, v, qh, kvh, hd, mask, p); });
}
void TimingBackend::gelu_tanh_mul(Tensor& g, const Tensor& u, const Precision& p) {
  timed("gelu_tanh_mul", [&] { inner().gelu_tanh_mul(g, u, p); });
}
void TimingBackend::gelu_tanh(Tensor& x, const Precision& p) { timed("gelu_tanh", [&] { inner().gelu_tanh(x, p); }); }
void TimingBackend::add(Tensor& x, const Tensor& y, const Precision& p) { timed("add", [&] { inner().add(x, y, p); }); }
void TimingBackend::mul(Tensor& x, const Tensor& y, const Precision& p) { timed("mul", [&] { inner().mul(x, y, p); }); }
void TimingBackend::scale(Tensor& x, float s, const Precision& p) { timed("scale", [&] { inner().scale(x, s, p); }); }
void TimingBackend::scale_columns(Tensor& x, const Tensor& v, const Precision& p) {
  timed("scale_columns", [&] { inner().scale_columns(x, v, p); });
}
void TimingBackend::softcap(Tensor& x, float cap, const Precision& p) { timed("softcap", [&] { inner().softcap(x, cap, p); }); }

Result<Tensor> TimingBackend::experts(const Tensor& x, const Routing& route, ExpertWeights& weights, int64_t hidden, const Precision& p) {
  return timed("experts", [&] {
    scope_ = "experts/";
    Result<Tensor> r = Backend::experts(x, route, weights, hidden, p);
    scope_.clear();
    return r;
  });
}

}  // namespace g4::forward
