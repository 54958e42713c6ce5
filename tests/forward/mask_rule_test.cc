// The device attention kernel's mask rule (mask_rule.h) decides every (query, key) exactly as AttentionMask::at,
// on random masks with padding, windows shorter and longer than the sequence, and vision groups.
#include "forward/mask_rule.h"

#include <gtest/gtest.h>

#include <random>

#include "forward/ops.h"

namespace g4::forward {
namespace {

TEST(MaskRule, EqualsAttentionMaskAtOnRandomMasks) {
  std::mt19937 rng(11);
  int allowed = 0, refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    AttentionMask m;
    m.batch = 1 + trial % 3;
    m.seq = 1 + static_cast<int64_t>(rng() % 23);
    m.key_is_real.resize(static_cast<size_t>(m.batch * m.seq));
    for (auto& r : m.key_is_real) r = rng() % 5 != 0;
    if (trial % 2) {
      m.vision_group.resize(m.key_is_real.size());
      for (auto& g : m.vision_group) g = static_cast<int64_t>(rng() % 4) - 1;  // -1: no group
    }
    if (trial % 3) m.window = 1 + static_cast<int64_t>(rng() % 30);  // shorter and longer than S
    const int64_t window = m.window ? *m.window : 0;
    for (int64_t b = 0; b < m.batch; ++b)
      for (int64_t q = 0; q < m.seq; ++q)
        for (int64_t k = 0; k < m.seq; ++k) {
          const size_t row = static_cast<size_t>(b * m.seq);
          const bool got = scalar::attention_allows(m.key_is_real.data() + row,
                                                    m.vision_group.empty() ? nullptr : m.vision_group.data() + row, window, q, k);
          ASSERT_EQ(got, m.at(b, q, k)) << "trial " << trial << " b " << b << " q " << q << " k " << k;
          (got ? allowed : refused)++;
        }
  }
  EXPECT_GT(allowed, 1000);
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace g4::forward
