// The decoder's host-side preparation: input ids, masks and RoPE tables, what the forward supports and whether
// an input fits in memory.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "forward/forward_input.h"
#include "forward/hf_model.h"
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
LayerGeometry layer_geometry(const gemma4::ModelConfig& config, const ForwardInput& in, const Precision& p);

Status check_supported(const gemma4::ModelConfig& config);

// About the most bytes of activations one forward holds at once: the residual stream and its working copies,
// one layer's attention and MLP temporaries (K/V kept for sharing included), PLE inputs, RoPE tables, the
// logits, what `o` asks to keep (hidden states, trace), and the largest weight matrix converted to f32. Linear
// in the tokens: attention masks are per token (ops.h) and scores per query row.
double forward_activation_bytes(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o);
// Refuses, before anything is allocated, an input the run cannot hold: rows longer than the model's context
// (max_position_embeddings), or activations above o.memory_limit (default: the machine's physical memory).
Status check_fits(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o);

}  // namespace g4::forward
