// RoPE frequency tables as transformers builds them (modeling_rope_utils.py, Gemma4TextRotaryEmbedding):
// "default" on sliding layers, "proportional" on full layers, where only int(partial_rotary_factor·hd // 2)
// frequencies are live, their exponent denominator is the FULL head dim, and the rest are zero, so those
// pairs (j, j + hd/2) pass through unrotated (pitfalls.md P13).
#pragma once

#include <cstdint>
#include <vector>

#include "forward/mat.h"
#include "forward/precision.h"
#include "gemma4/config.h"

namespace g4::forward {

// inv_freq of length hd/2, in fp32 (it stays fp32 in a bf16 model).
std::vector<float> rope_inv_freq(const gemma4::RopeParameters& params, int64_t head_dim);

// cos/sin[T, hd] for the given positions: emb = cat(pos·inv_freq, pos·inv_freq), computed in fp32, then
// cast to the compute dtype (rounded to bf16 in bf16 mode).
void rope_tables(const std::vector<float>& inv_freq, const std::vector<int64_t>& positions, const Precision& p,
                 Mat& cos, Mat& sin);

}  // namespace g4::forward
