// Megatron-Bridge's vocabulary padding (megatron-bridge-observed.md): the word embedding and an untied output
// layer may be stored with more rows than the vocabulary (zeros up to a multiple of 128 for MB's dense providers,
// 128 x TP where the vocabulary comes from the tokenizer). Readers take the
// first vocab_size rows (dcp::Checkpoint::read_slab with extra_rows); this checks the rows beyond, which a
// trained checkpoint may have changed, in bounded pieces.
#pragma once

#include <string>

#include "runtime/dcp/checkpoint.h"

namespace g4::convert {

struct VocabPadding {
  int64_t vocab = 0;          // rows the config implies
  int64_t stored = 0;         // rows stored (== vocab: not padded)
  int64_t nonzero_rows = 0;   // padding rows holding a nonzero element (-0.0 counts as zero)
  int64_t first_nonzero = -1; // the first of them (a row index of the stored tensor)
};

// The padding of the unstacked vocabulary parameter `key`, whose config shape is `shape`. Errors name the
// checkpoint and key (missing key, other row dims, fewer rows than the vocabulary).
Result<VocabPadding> scan_vocab_padding(const dcp::Checkpoint& ckpt, const std::string& key, const Shape& shape);

// "<iteration dir>: 'KEY' is stored with S rows for a vocabulary of V: N padding rows are not zero (the first: row R)".
std::string describe_nonzero_padding(const dcp::Checkpoint& ckpt, const std::string& key, const VocabPadding& padding);

}  // namespace g4::convert
