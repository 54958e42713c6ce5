// Pieces both forwards (HF semantics in hf_model.cc, Megatron semantics in mcore_model.cc) share, so that the
// two differ only in how they read and pack weights: input preparation, masks and RoPE tables, column
// slicing, and the MoE token dispatch.
#pragma once

#include <map>
#include <vector>

#include "forward/forward_input.h"
#include "forward/masks.h"
#include "forward/mat.h"
#include "forward/ops.h"
#include "gemma4/config.h"

namespace g4::forward {

// Token ids the conditional model replaces by pad before embedding (Gemma4Model.forward): multimodal
// placeholders, whose rows the tower features would overwrite.
std::vector<int64_t> llm_input_ids(const gemma4::ModelConfig& config, const ForwardInput& in);

// Masks and RoPE tables per layer type for one input.
struct LayerGeometry {
  std::map<gemma4::LayerType, AttentionMask> masks;
  std::map<gemma4::LayerType, std::pair<Mat, Mat>> rope;  // cos, sin [T, hd]
};
// `sliding_window_delta` shifts the window (a planted bug for verify's tests; 0 otherwise).
LayerGeometry layer_geometry(const gemma4::ModelConfig& config, const ForwardInput& in, const Precision& p,
                             int64_t sliding_window_delta = 0);

Mat columns(const Mat& x, int64_t first, int64_t count);

// Tokens (and their top-k slots) routed to expert `e`.
void tokens_of_expert(const Routing& route, int64_t e, std::vector<int64_t>& tokens, std::vector<int64_t>& slots);
// out[token] += weight · y[i] for each routed token, rounded as bf16 index_add_ does in bf16 mode.
void add_expert_output(const Routing& route, const std::vector<int64_t>& tokens, const std::vector<int64_t>& slots, const Mat& y,
                       Mat& out, const Precision& p);

Status check_supported(const gemma4::ModelConfig& config);

}  // namespace g4::forward
