// Attention masks of one forward (masking_utils.py and Gemma4Model.forward, transformers 5.23):
//   full    : k <= q, and key k is not padding
//   sliding : (k <= q OR same vision group) AND k > q - W, and key k is not padding
// A vision group is one contiguous run of mm_token_type_ids 1 (image) or 2 (video); groups apply only to
// sliding layers and only when the conditional model has use_bidirectional_attention == "vision"
// (pitfalls/gemma4-hf.md §4.1: the current rule, after transformers PR #46850).
#pragma once

#include <cstdint>
#include <vector>

#include "forward/ops.h"

namespace g4::forward {

struct MaskInputs {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<uint8_t> key_is_real;   // [B, S] attention_mask
  std::vector<int64_t> vision_group;  // [B, S] group id or -1; empty when no bidirectional groups apply
};

// Group ids per row from mm_token_type_ids: each run of 1/2 values starts a new group.
std::vector<int64_t> vision_groups(const std::vector<int64_t>& mm_token_type_ids, int64_t batch, int64_t seq);

AttentionMask full_attention_mask(const MaskInputs& in);
AttentionMask sliding_attention_mask(const MaskInputs& in, int64_t window);

}  // namespace g4::forward
