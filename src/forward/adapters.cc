#include "forward/adapters.h"

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

Status add_unmerged(Backend& ops, const LowRank& d, int64_t e, const Mat& x, Mat& out, const Precision& inner, const Precision& p) {
  G4_RETURN_IF_ERROR(check(d, e, x.cols, out.cols));
  Mat a = d.a_of(e), b = d.b_of(e), ax, bax;
  inner.round(a);  // the adapter's parameters in its own dtype
  inner.round(b);
  ops.linear(x, a, ax, inner);
  ops.linear(ax, b, bax, inner);
  ops.scale(bax, static_cast<float>(d.scale), inner);
  ops.add(out, bax, p);
  return {};
}

Status merge_into(Backend& ops, const LowRank& d, int64_t e, Mat& w, const Precision& p) {
  G4_RETURN_IF_ERROR(check(d, e, w.cols, w.rows));
  Mat b = d.b_of(e), at(d.in, d.rank), ba;
  const Mat a = d.a_of(e);
  for (int64_t k = 0; k < d.rank; ++k)
    for (int64_t i = 0; i < d.in; ++i) at.v[static_cast<size_t>(i * d.rank + k)] = p.round(a.v[static_cast<size_t>(k * d.in + i)]);
  p.round(b);
  ops.linear(b, at, ba, Precision{});  // B·A accumulated in fp32
  const float s = static_cast<float>(d.scale);
  for (size_t i = 0; i < w.v.size(); ++i) w.v[i] = p.round(w.v[i] + s * ba.v[i]);
  return {};
}

}  // namespace g4::forward
