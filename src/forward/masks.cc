#include "forward/masks.h"

namespace g4::forward {

std::vector<int64_t> vision_groups(const std::vector<int64_t>& tt, int64_t batch, int64_t seq) {
  std::vector<int64_t> group(static_cast<size_t>(batch * seq), -1);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t next = 0;
    bool prev_vision = false;
    for (int64_t s = 0; s < seq; ++s) {
      int64_t t = tt[static_cast<size_t>(b * seq + s)];
      bool vision = t == 1 || t == 2;
      if (vision && !prev_vision) ++next;
      if (vision) group[static_cast<size_t>(b * seq + s)] = next - 1;
      prev_vision = vision;
    }
  }
  return group;
}

namespace {

template <class Allowed>
AttentionMask build(const MaskInputs& in, Allowed allowed) {
  AttentionMask m;
  m.batch = in.batch;
  m.seq = in.seq;
  m.allowed.assign(static_cast<size_t>(in.batch * in.seq * in.seq), 0);
  for (int64_t b = 0; b < in.batch; ++b)
    for (int64_t q = 0; q < in.seq; ++q)
      for (int64_t k = 0; k < in.seq; ++k)
        m.allowed[static_cast<size_t>((b * in.seq + q) * in.seq + k)] =
            in.key_is_real[static_cast<size_t>(b * in.seq + k)] && allowed(b, q, k);
  return m;
}

}  // namespace

AttentionMask full_attention_mask(const MaskInputs& in) {
  return build(in, [](int64_t, int64_t q, int64_t k) { return k <= q; });
}

AttentionMask sliding_attention_mask(const MaskInputs& in, int64_t window) {
  return build(in, [&](int64_t b, int64_t q, int64_t k) {
    bool same_group = false;
    if (!in.vision_group.empty()) {
      int64_t gq = in.vision_group[static_cast<size_t>(b * in.seq + q)];
      same_group = gq >= 0 && gq == in.vision_group[static_cast<size_t>(b * in.seq + k)];
    }
    return (k <= q || same_group) && k > q - window;  // the query sees itself and W-1 earlier tokens
  });
}

}  // namespace g4::forward
