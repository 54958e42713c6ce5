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

AttentionMask full_attention_mask(const MaskInputs& in) {
  return AttentionMask{in.batch, in.seq, in.key_is_real, {}, std::nullopt};  // causal: vision groups do not apply
}

AttentionMask sliding_attention_mask(const MaskInputs& in, int64_t window) {
  return AttentionMask{in.batch, in.seq, in.key_is_real, in.vision_group, window};
}

}  // namespace g4::forward
