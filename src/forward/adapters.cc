#include "forward/adapters.h"

#include <cblas.h>

#include <algorithm>

namespace g4::forward {

Mat LowRank::a_of(int64_t e) const {
  if (!experts) e = 0;  // one delta for every expert (a 2-D weight, or a shared expert adapter)
  Mat m(rank, in);
  const auto first = a.begin() + static_cast<std::ptrdiff_t>(e * rank * in);
  std::copy(first, first + static_cast<std::ptrdiff_t>(m.v.size()), m.v.begin());
  return m;
}

Mat LowRank::b_of(int64_t e) const {
  if (!experts) e = 0;
  Mat m(out, rank);
  const auto first = b.begin() + static_cast<std::ptrdiff_t>(e * out * rank);
  std::copy(first, first + static_cast<std::ptrdiff_t>(m.v.size()), m.v.begin());
  return m;
}

namespace {

Status check(const LowRank& d, int64_t e, int64_t in, int64_t out) {
  const int64_t slots = std::max<int64_t>(d.experts, 1);
  if (e < 0 || (d.experts && e >= slots)) return Status::internal("LoRA delta: no expert " + std::to_string(e));
  if (d.in != in || d.out != out || d.a.size() != static_cast<size_t>(slots * d.rank * d.in) ||
      d.b.size() != static_cast<size_t>(slots * d.out * d.rank))
    return Status::mismatch("LoRA delta [" + std::to_string(d.out) + ", " + std::to_string(d.in) + "] on a weight [" +
                            std::to_string(out) + ", " + std::to_string(in) + "]");
  return {};
}

}  // namespace

Status add_unmerged(Backend& ops, const LowRank& d, int64_t e, const Tensor& x, Tensor& out, const Precision& inner,
                    const Precision& p) {
  G4_RETURN_IF_ERROR(check(d, e, x.cols(), out.cols()));
  auto factor = [&](const Mat& m) {  // the adapter's parameters in its own dtype
    Tensor host = Tensor::host(DType::kF32, m.rows, m.cols);
    std::copy(m.v.begin(), m.v.end(), host.f32());
    return ops.weight(host, inner);
  };
  const Tensor a = factor(d.a_of(e)), b = factor(d.b_of(e));
  Tensor bax = ops.linear(ops.linear(x, a, inner), b, inner);
  ops.scale(bax, static_cast<float>(d.scale), inner);
  ops.add(out, bax, p);
  return {};
}

Status merge_into(const LowRank& d, int64_t e, Mat& w, const Precision& p) {
  G4_RETURN_IF_ERROR(check(d, e, w.cols, w.rows));
  Mat b = d.b_of(e), a = d.a_of(e), ba(d.out, d.in);
  p.round(a);
  p.round(b);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(d.out), static_cast<int>(d.in), static_cast<int>(d.rank),
              1.0f, b.v.data(), static_cast<int>(d.rank), a.v.data(), static_cast<int>(d.in), 0.0f, ba.v.data(), static_cast<int>(d.in));
  const float s = static_cast<float>(d.scale);
  for (size_t i = 0; i < w.v.size(); ++i) w.v[i] = p.round(w.v[i] + s * ba.v[i]);
  return {};
}

}  // namespace g4::forward
