// The attention mask rule of AttentionMask::at (ops.h) on raw per-token arrays, as a G4_HD function: the CUDA
// attention kernel decides each (query, key) with it from the host mask's arrays, uploaded as they are (no [B, S, S]
// table). tests/forward/mask_rule_test.cc checks it equals AttentionMask::at on random masks.
#pragma once

#include <cstdint>

#include "forward/scalar_math.h"

namespace g4::forward::scalar {

// Row b's arrays: key_is_real[S]; vision_group[S] or null (no bidirectional groups); window <= 0: none.
G4_HD inline bool attention_allows(const uint8_t* key_is_real, const int64_t* vision_group, int64_t window, int64_t q, int64_t k) {
  if (!key_is_real[k]) return false;
  if (window > 0 && k <= q - window) return false;
  if (k <= q) return true;
  if (!vision_group) return false;
  const int64_t g = vision_group[q];
  return g >= 0 && g == vision_group[k];
}

}  // namespace g4::forward::scalar
