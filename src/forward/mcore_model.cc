#include "forward/mcore_model.h"

#include <cmath>

#include "forward/model_common.h"
#include "forward/rope.h"

namespace g4::forward {
namespace {

using gemma4::LayerSpec;
using gemma4::LayerType;

struct Context {
  const McoreWeights& w;
  const gemma4::TextConfig& cfg;
  Backend& ops;
  Precision p;
  const FaultInjection& faults;
  bool moe = false;  // TE spec names (26B-A4B) vs the local spec's (dense)
  LayerGeometry geo;
  std::map<LayerType, std::pair<Mat, Mat>> shared_kv;
  const AdapterSource* adapters = nullptr;
};

std::string M(int l, const char* rest) { return "decoder.layers." + std::to_string(l) + "." + rest; }

// The checkpoint's LoRA delta on `weight`, null when it has none.
Result<std::shared_ptr<const LowRank>> delta(Context& c, const std::string& weight) {
  if (!c.adapters) return std::shared_ptr<const LowRank>();
  return c.adapters->delta(weight);
}

// MB's LoRALinear: out += s·B·(A·x) on the input x the wrapped linear multiplies, the adapter in the model dtype.
Status add_lora(Context& c, const std::shared_ptr<const LowRank>& d, int64_t expert, const Mat& x, Mat& out) {
  return d ? add_unmerged(c.ops, *d, expert, x, out, c.p, c.p) : Status();
}

Status adapted_linear(Context& c, const Mat& x, const std::string& weight, Mat& out) {
  G4_RETURN_IF_ERROR(linear(c, x, weight, out));
  G4_ASSIGN_OR_RETURN(auto d, delta(c, weight));
  return add_lora(c, d, 0, x, out);
}

// The fault "RoPE over the first dims": rotate the first 2·n_rot dims of each head as if they were the head.
void rope_first_dims(Context& c, Mat& x, const LayerSpec& s, int64_t heads, const std::vector<int64_t>& positions) {
  const auto inv = rope_inv_freq(c.cfg.rope_full, s.head_dim);
  int64_t n_rot = 0;
  while (n_rot < static_cast<int64_t>(inv.size()) && inv[static_cast<size_t>(n_rot)] != 0.0f) ++n_rot;
  const std::vector<float> short_inv(inv.begin(), inv.begin() + n_rot);
  Mat cos, sin;
  rope_tables(short_inv, positions, c.p, cos, sin);
  Mat part(x.rows, heads * 2 * n_rot);
  for (int64_t t = 0; t < x.rows; ++t)
    for (int64_t h = 0; h < heads; ++h)
      std::copy(x.row(t) + h * s.head_dim, x.row(t) + h * s.head_dim + 2 * n_rot, part.row(t) + h * 2 * n_rot);
  c.ops.rope(part, 2 * n_rot, cos, sin, c.p);
  for (int64_t t = 0; t < x.rows; ++t)
    for (int64_t h = 0; h < heads; ++h)
      std::copy(part.row(t) + h * 2 * n_rot, part.row(t) + (h + 1) * 2 * n_rot, x.row(t) + h * s.head_dim);
}

// SelfAttention.get_query_key_value_tensors: one matmul, then per query group [q heads; k; v]. `proj_lora`:
// the linear_proj adapter's output when it goes after the post-attention norm (26B-A4B), else left empty.
Result<Mat> attention(Context& c, const LayerSpec& s, const Mat& a, const std::vector<int64_t>& positions, Mat& proj_lora) {
  const int l = s.index;
  const int64_t hd = s.head_dim, nq = c.cfg.num_attention_heads, ng = s.kv_heads, per = nq / ng;
  Mat qkv;
  G4_RETURN_IF_ERROR(adapted_linear(c, a, M(l, "self_attention.linear_qkv.weight"), qkv));
  if (qkv.cols != (nq + 2 * ng) * hd) return Status::mismatch(M(l, "self_attention.linear_qkv.weight") + " has the wrong row count");
  Mat q(a.rows, nq * hd), k(a.rows, ng * hd), v(a.rows, ng * hd);
  for (int64_t t = 0; t < a.rows; ++t) {
    const float* row = qkv.row(t);
    for (int64_t g = 0; g < ng; ++g) {
      const float* group = row + g * (per + 2) * hd;
      std::copy(group, group + per * hd, q.row(t) + g * per * hd);
      std::copy(group + per * hd, group + (per + 1) * hd, k.row(t) + g * hd);
      std::copy(group + (per + 1) * hd, group + (per + 2) * hd, v.row(t) + g * hd);
    }
  }
  const auto& [cos, sin] = c.geo.rope.at(s.type);
  const bool fault_rope = c.faults.rope_first_dims && s.type == LayerType::kFull;
  G4_RETURN_IF_ERROR(norm(c, q, M(l, "self_attention.q_layernorm.weight"), hd));
  if (fault_rope) rope_first_dims(c, q, s, nq, positions);
  else c.ops.rope(q, hd, cos, sin, c.p);
  if (s.kv_shared) {
    const auto& kv = c.shared_kv.at(s.type);
    k = kv.first;
    v = kv.second;
  } else {
    if (s.k_eq_v) v = k;  // tied K=V: the V slot is ignored, V is the raw K projection (then v_norm)
    G4_RETURN_IF_ERROR(norm(c, k, M(l, "self_attention.k_layernorm.weight"), hd));
    if (fault_rope) rope_first_dims(c, k, s, ng, positions);
    else c.ops.rope(k, hd, cos, sin, c.p);
    c.ops.rms_norm(v, nullptr, hd, static_cast<float>(c.cfg.rms_norm_eps), c.p);
    if (s.stores_kv) c.shared_kv[s.type] = {k, v};
  }
  Mat o, out;
  c.ops.attention(q, k, v, nq, ng, hd, c.geo.masks.at(s.type), o, c.p);
  if (!c.moe) {
    G4_RETURN_IF_ERROR(adapted_linear(c, o, M(l, "self_attention.linear_proj.weight"), out));
    return out;
  }
  // TERowParallelLinearLayerNorm returns post_norm(W_o·o); MB's LoRALinear adds its adapter to that output.
  G4_RETURN_IF_ERROR(linear(c, o, M(l, "self_attention.linear_proj.weight"), out));
  G4_ASSIGN_OR_RETURN(auto d, delta(c, M(l, "self_attention.linear_proj.weight")));
  if (d) {
    proj_lora = Mat(o.rows, out.cols);
    G4_RETURN_IF_ERROR(add_unmerged(c.ops, *d, 0, o, proj_lora, c.p, Precision{}));
  }
  return out;
}

// MLP.forward with a gated unit: one fc1 matmul, chunk(2) into gate and up, GeGLU, fc2.
Result<Mat> gated_mlp(Context& c, const std::string& fc1, const std::string& fc2, const Mat& x) {
  Mat h, out;
  G4_RETURN_IF_ERROR(adapted_linear(c, x, fc1, h));
  const int64_t half = h.cols / 2;
  Mat gate = columns(h, 0, half), up = columns(h, half, half);
  c.ops.gelu_tanh_mul(gate, up, c.p);
  G4_RETURN_IF_ERROR(adapted_linear(c, gate, fc2, out));
  return out;
}

// Gemma4MoELayer: router on the raw residual, TEGroupedMLP experts from the [L, E, ...] stacks, shared expert.
Result<Mat> moe_block(Context& c, const LayerSpec& s, const Mat& r, LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size, E = *c.cfg.num_experts;
  Mat shared = r;
  G4_RETURN_IF_ERROR(norm(c, shared, M(l, "pre_shared_expert_layernorm.weight"), H));
  G4_ASSIGN_OR_RETURN(shared, gated_mlp(c, M(l, "mlp.shared_experts.linear_fc1.weight"), M(l, "mlp.shared_experts.linear_fc2.weight"), shared));
  G4_RETURN_IF_ERROR(norm(c, shared, M(l, "mlp.post_shared_expert_layernorm.weight"), H));
  if (trace) trace->mlp = shared;

  Mat n = r;  // Gemma4TopKRouter.gating
  c.ops.rms_norm(n, nullptr, H, static_cast<float>(c.cfg.rms_norm_eps), c.p);
  G4_ASSIGN_OR_RETURN(std::vector<float> scale, c.w.vector(M(l, "mlp.router.scale"), c.p));
  c.ops.scale_columns(n, scale, c.p);
  c.ops.scale(n, std::pow(static_cast<float>(H), -0.5f), c.p);
  Mat logits;
  G4_RETURN_IF_ERROR(linear(c, n, M(l, "mlp.router.weight"), logits));
  // LoRATopKRouter: the adapter sees the router's input (the raw residual), not the normed one gating projects.
  G4_ASSIGN_OR_RETURN(auto router_lora, delta(c, M(l, "mlp.router.weight")));
  G4_RETURN_IF_ERROR(add_lora(c, router_lora, 0, r, logits));
  G4_ASSIGN_OR_RETURN(std::vector<float> per_expert, c.w.vector(M(l, "mlp.router.per_expert_scale"), c.p));
  if (trace) trace->router_logits = logits;
  Routing route = c.ops.route(logits, *c.cfg.top_k_experts, per_expert);

  Mat x = r;
  G4_RETURN_IF_ERROR(norm(c, x, M(l, "pre_mlp_layernorm.weight"), H));
  Mat routed(x.rows, H);
  std::vector<int64_t> tokens, slots;
  G4_ASSIGN_OR_RETURN(auto fc1_lora, delta(c, M(l, "mlp.experts.experts.linear_fc1.weight")));
  G4_ASSIGN_OR_RETURN(auto fc2_lora, delta(c, M(l, "mlp.experts.experts.linear_fc2.weight")));
  for (int64_t e = 0; e < E; ++e) {
    tokens_of_expert(route, e, tokens, slots);
    if (tokens.empty()) continue;
    Mat xe(static_cast<int64_t>(tokens.size()), H);
    for (size_t i = 0; i < tokens.size(); ++i) std::copy(x.row(tokens[i]), x.row(tokens[i]) + H, xe.row(static_cast<int64_t>(i)));
    G4_ASSIGN_OR_RETURN(Mat fc1, c.w.slice(M(l, "mlp.experts.experts.linear_fc1.weight"), e, c.p));
    Mat h, y;
    c.ops.linear(xe, fc1, h, c.p);
    G4_RETURN_IF_ERROR(add_lora(c, fc1_lora, e, xe, h));  // per expert, on its routed tokens
    const int64_t half = h.cols / 2;
    Mat gate = columns(h, 0, half), up = columns(h, half, half);
    c.ops.gelu_tanh_mul(gate, up, c.p);
    G4_ASSIGN_OR_RETURN(Mat fc2, c.w.slice(M(l, "mlp.experts.experts.linear_fc2.weight"), e, c.p));
    c.ops.linear(gate, fc2, y, c.p);
    G4_RETURN_IF_ERROR(add_lora(c, fc2_lora, e, gate, y));
    add_expert_output(route, tokens, slots, y, routed, c.p);
  }
  G4_RETURN_IF_ERROR(norm(c, routed, M(l, "mlp.post_moe_layernorm.weight"), H));
  if (trace) trace->experts = routed;
  c.ops.add(shared, routed, c.p);
  G4_RETURN_IF_ERROR(norm(c, shared, M(l, "post_ffn_layernorm.weight"), H));
  if (routing) *routing = {l, std::move(route)};
  return shared;
}

Status layer(Context& c, const LayerSpec& s, Mat& x, const Mat& ple, const std::vector<int64_t>& positions,
             LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size;
  Mat a = x;
  G4_RETURN_IF_ERROR(norm(c, a, M(l, c.moe ? "self_attention.linear_qkv.layer_norm_weight" : "input_layernorm.weight"), H));
  Mat proj_lora;
  G4_ASSIGN_OR_RETURN(a, attention(c, s, a, positions, proj_lora));
  G4_RETURN_IF_ERROR(norm(c, a, M(l, c.moe ? "self_attention.linear_proj.post_layernorm.weight" : "post_self_attn_layernorm.weight"), H));
  if (!proj_lora.v.empty()) c.ops.add(a, proj_lora, c.p);
  if (trace) trace->attention = a;
  c.ops.add(x, a, c.p);

  Mat m;
  if (s.has_moe) {
    G4_ASSIGN_OR_RETURN(m, moe_block(c, s, x, routing, trace));
  } else {
    m = x;
    G4_RETURN_IF_ERROR(norm(c, m, M(l, "pre_mlp_layernorm.weight"), H));
    G4_ASSIGN_OR_RETURN(m, gated_mlp(c, M(l, "mlp.linear_fc1.weight"), M(l, "mlp.linear_fc2.weight"), m));
    G4_RETURN_IF_ERROR(norm(c, m, M(l, "post_mlp_layernorm.weight"), H));
    if (trace) trace->mlp = m;
  }
  c.ops.add(x, m, c.p);

  if (s.has_ple) {
    const int64_t D = c.cfg.hidden_size_per_layer_input;
    Mat g, p;
    G4_RETURN_IF_ERROR(adapted_linear(c, x, M(l, "per_layer_input_gate.weight"), g));
    c.ops.gelu_tanh(g, c.p);
    c.ops.mul(g, columns(ple, l * D, D), c.p);
    G4_RETURN_IF_ERROR(adapted_linear(c, g, M(l, "per_layer_projection.weight"), p));
    G4_RETURN_IF_ERROR(norm(c, p, M(l, "post_per_layer_input_norm.weight"), H));
    if (trace) trace->ple = p;
    c.ops.add(x, p, c.p);
  }
  G4_ASSIGN_OR_RETURN(std::vector<float> scalar, c.w.vector(M(l, "layer_scalar"), c.p));
  if (scalar.size() != 1) return Status::mismatch(M(l, "layer_scalar") + " is not a single value");
  c.ops.scale(x, scalar[0], c.p);
  return {};
}

}  // namespace

Result<ForwardResult> mcore_forward(const McoreWeights& w, const ForwardInput& in, const ForwardOptions& o, const FaultInjection& faults) {
  if (!o.backend) return Status::internal("mcore_forward without a backend");
  G4_RETURN_IF_ERROR(check_supported(w.config()));
  G4_RETURN_IF_ERROR(check_fits(w.config().text, in, o));
  const gemma4::TextConfig& cfg = w.config().text;
  Context c{w, cfg, *o.backend, Precision{o.mode}, faults, cfg.enable_moe_block, {}, {}, o.adapters};
  c.geo = layer_geometry(w.config(), in, c.p, faults.sliding_window_delta);

  ForwardResult r;
  r.batch = in.batch;
  r.seq = in.seq;
  const std::vector<int64_t> ids = llm_input_ids(w.config(), in);
  G4_ASSIGN_OR_RETURN(Mat x, embed_tokens(c, "embedding.word_embeddings.weight", ids, cfg.hidden_size));
  Mat ple;
  if (cfg.has_ple()) {  // Megatron-Bridge's _compute_per_layer_inputs
    G4_ASSIGN_OR_RETURN(ple, per_layer_inputs(c, x, ids, {"per_layer_embedding.weight", "per_layer_model_proj.weight", "per_layer_proj_norm.weight"}));
  }
  G4_RETURN_IF_ERROR(run_layers(cfg, in, o, x, r, [&](const LayerSpec& s, LayerRouting* routing, LayerTrace* trace) {
    return layer(c, s, x, ple, in.position_ids, routing, trace);
  }));
  // Final norm, the tied output layer (embedding.word_embeddings), Gemma4OutputLayer's softcap.
  G4_ASSIGN_OR_RETURN(r.logits, tied_head(c, std::move(x), "decoder.final_layernorm.weight", "embedding.word_embeddings.weight",
                                          faults.softcap_times));
  return r;
}

}  // namespace g4::forward
