// Token input of a forward, in transformers' names: input_ids [B, S], attention_mask [B, S] (1 = real),
// mm_token_type_ids [B, S] (0 text, 1 image, 2 video, 3 audio), optional position_ids [B, S]
// (default: 0..S-1 for every row, as transformers' forward uses when none are given).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/status.h"

namespace g4::forward {

struct ForwardInput {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int64_t> input_ids;
  std::vector<uint8_t> attention_mask;
  std::vector<int64_t> mm_token_type_ids;  // empty when not given
  std::vector<int64_t> position_ids;

  // Index of the last real (mask 1) position of row b; -1 for an all-padding row.
  int64_t last_real(int64_t b) const;
};

// {"input_ids": [[...], ...], "attention_mask": [[...]], "mm_token_type_ids": [[...]], "position_ids": [[...]]};
// a flat list is one row. `file` names the file in messages.
Result<ForwardInput> parse_forward_input(std::string_view json_text, std::string_view file);
// "2,651,9" -> one row.
Result<ForwardInput> forward_input_from_ids(std::string_view ids);

}  // namespace g4::forward
