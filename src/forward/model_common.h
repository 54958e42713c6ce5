// Pieces both forwards (HF semantics in hf_model.cc, Megatron semantics in mcore_model.cc) share, so that the
// two differ only in how they read and pack weights: input preparation, masks and RoPE tables, column
// slicing, and the MoE token dispatch.
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

// About the most bytes of activations one forward holds at once: the residual stream and its working copies,
// one layer's attention and MLP temporaries (K/V kept for sharing included), PLE inputs, RoPE tables, the
// logits, what `o` asks to keep (hidden states, trace), and the largest weight matrix converted to f32. Linear
// in the tokens: attention masks are per token (ops.h) and scores per query row.
double forward_activation_bytes(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o);
// Refuses, before anything is allocated, an input the run cannot hold: rows longer than the model's context
// (max_position_embeddings), or activations above o.memory_limit (default: the machine's physical memory).
Status check_fits(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o);

// Weight-reading steps both forwards take the same way. `C` is a forward's context: weights `w` (matrix,
// vector, rows by name), backend `ops`, precision `p`, text config `cfg`.
template <class C>
Status norm(C& c, Mat& x, const std::string& weight, int64_t dim) {
  G4_ASSIGN_OR_RETURN(std::vector<float> w, c.w.vector(weight, c.p));
  if (static_cast<int64_t>(w.size()) != dim) return Status::mismatch("'" + weight + "' has the wrong length");
  c.ops.rms_norm(x, w.data(), dim, static_cast<float>(c.cfg.rms_norm_eps), c.p);
  return {};
}

template <class C>
Status linear(C& c, const Mat& x, const std::string& weight, Mat& out) {
  G4_ASSIGN_OR_RETURN(Mat w, c.w.matrix(weight, c.p));
  c.ops.linear(x, w, out, c.p);
  return {};
}

// Gemma4TextScaledWordEmbedding: E[ids] · embed_scale, the scale cast to the weight dtype first.
template <class C>
Result<Mat> embed_tokens(C& c, const std::string& table, const std::vector<int64_t>& ids, int64_t width) {
  G4_ASSIGN_OR_RETURN(Mat h, c.w.rows(table, ids, c.p));
  c.ops.scale(h, c.p.round(std::sqrt(static_cast<float>(width))), c.p);
  return h;
}

// The per-layer-embedding tensors under each side's names.
struct PleNames {
  const char* table;       // embed_tokens_per_layer / per_layer_embedding
  const char* projection;  // per_layer_model_projection / per_layer_model_proj
  const char* norm;        // per_layer_projection_norm / per_layer_proj_norm
};

// get_per_layer_inputs + project_per_layer_inputs: [T, L·D], layer l reads columns [l·D, (l+1)·D).
template <class C>
Result<Mat> per_layer_inputs(C& c, const Mat& h0, const std::vector<int64_t>& ids, const PleNames& names) {
  const int64_t D = c.cfg.hidden_size_per_layer_input;
  G4_ASSIGN_OR_RETURN(Mat raw, embed_tokens(c, names.table, ids, D));
  Mat proj;
  // The forward's own adapted_linear (found by argument-dependent lookup on its context): its LoRA, if any, applies.
  G4_RETURN_IF_ERROR(adapted_linear(c, h0, names.projection, proj));
  c.ops.scale(proj, std::pow(static_cast<float>(c.cfg.hidden_size), -0.5f), c.p);
  G4_RETURN_IF_ERROR(norm(c, proj, names.norm, D));  // one norm over each layer's D slice
  c.ops.add(proj, raw, c.p);
  c.ops.scale(proj, std::pow(2.0f, -0.5f), c.p);
  return proj;
}

}  // namespace g4::forward

namespace g4::forward {

// The decoder loop both forwards share: fn(spec, routing or null, trace or null) runs one layer on x; routing,
// hidden states, trace and progress are collected as `o` asks. Afterwards x keeps only each row's last real
// token unless every position's logits are wanted.
template <class LayerFn>
Status run_layers(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o, Mat& x, ForwardResult& r, LayerFn&& fn) {
  for (int64_t b = 0; b < in.batch; ++b) r.last_real.push_back(in.last_real(b));
  if (o.keep_hidden) r.hidden.push_back(x);
  for (const gemma4::LayerSpec& s : cfg.layers) {
    LayerRouting routing;
    LayerTrace* trace = o.trace ? &o.trace->emplace_back() : nullptr;
    Status st = fn(s, s.has_moe ? &routing : nullptr, trace);
    if (!st.ok()) return st.with_context("layer " + std::to_string(s.index));
    if (s.has_moe) r.routing.push_back(std::move(routing));
    if (o.keep_hidden) r.hidden.push_back(x);
    if (o.on_layer) o.on_layer(s.index + 1, static_cast<int>(cfg.layers.size()));
  }
  if (!o.all_logits) {
    Mat last(in.batch, cfg.hidden_size);
    for (int64_t b = 0; b < in.batch; ++b)
      std::copy(x.row(b * in.seq + r.last_real[static_cast<size_t>(b)]), x.row(b * in.seq + r.last_real[static_cast<size_t>(b)]) + cfg.hidden_size, last.row(b));
    x = std::move(last);
  }
  return {};
}

// Final norm, the tied head streamed over vocab blocks of `table`, and the softcap `softcap_times` times
// (once; the fault injection of verify's tests changes it).
template <class C>
Result<Mat> tied_head(C& c, Mat h, const std::string& final_norm, const std::string& table, int softcap_times = 1) {
  constexpr int64_t kHeadBlockRows = 8192;  // vocab rows converted at a time
  G4_RETURN_IF_ERROR(norm(c, h, final_norm, c.cfg.hidden_size));
  Mat logits(h.rows, c.cfg.vocab_size);
  G4_RETURN_IF_ERROR(c.w.for_each_row_block(table, kHeadBlockRows, c.p, [&](int64_t first, const Mat& block) {
    Mat part;
    c.ops.linear(h, block, part, c.p);
    for (int64_t t = 0; t < h.rows; ++t) std::copy(part.row(t), part.row(t) + part.cols, logits.row(t) + first);
    return Status();
  }));
  if (c.cfg.final_logit_softcapping)
    for (int k = 0; k < softcap_times; ++k) c.ops.softcap(logits, static_cast<float>(*c.cfg.final_logit_softcapping), c.p);
  return logits;
}

}  // namespace g4::forward
