#include "forward/hf_model.h"

#include <cmath>
#include <map>

#include "forward/model_common.h"

namespace g4::forward {
namespace {

using gemma4::LayerSpec;
using gemma4::LayerType;


// Everything a layer needs besides its weights, built once per forward.
struct Context {
  const HfWeights& w;
  const gemma4::TextConfig& cfg;
  Backend& ops;
  Precision p;
  int64_t T = 0;  // tokens = B·S
  std::map<LayerType, AttentionMask> masks;
  std::map<LayerType, std::pair<Mat, Mat>> rope;   // cos, sin [T, hd]
  std::map<LayerType, std::pair<Mat, Mat>> shared_kv;  // K, V stored by the last owner of each type
  const AdapterSource* adapters = nullptr;               // PEFT's LoRA, by full HF tensor name
};

std::string L(int l, const char* rest) { return "layers." + std::to_string(l) + "." + rest; }

float eps(const Context& c) { return static_cast<float>(c.cfg.rms_norm_eps); }

// The adapter's delta on `name` (relative to the text prefix), null when it has none.
Result<std::shared_ptr<const LowRank>> delta(Context& c, const std::string& name) {
  if (!c.adapters) return std::shared_ptr<const LowRank>();
  return c.adapters->delta(c.w.prefix() + name);
}

// PEFT's lora.Linear, unmerged: base(x) + lora_B(lora_A(x)) · s with the adapter and its input in fp32, the sum
// cast back to the base output's dtype.
Status adapted_linear(Context& c, const Mat& x, const std::string& name, Mat& out) {
  G4_RETURN_IF_ERROR(linear(c, x, name, out));
  G4_ASSIGN_OR_RETURN(auto d, delta(c, name));
  return d ? add_unmerged(c.ops, *d, 0, x, out, Precision{}, c.p) : Status();
}

// Gemma4TextAttention: q/k norms before RoPE, weightless v_norm, K=V from the raw k_proj output on full
// layers with attention_k_eq_v, K/V of the source layer on KV-shared layers, scale 1.0.
Result<Mat> attention_block(Context& c, const LayerSpec& s, const Mat& a) {
  const int l = s.index;
  const int64_t hd = s.head_dim, Hq = c.cfg.num_attention_heads;
  const auto& [cos, sin] = c.rope.at(s.type);
  Mat q;
  G4_RETURN_IF_ERROR(adapted_linear(c, a, L(l, "self_attn.q_proj.weight"), q));
  G4_RETURN_IF_ERROR(norm(c, q, L(l, "self_attn.q_norm.weight"), hd));
  c.ops.rope(q, hd, cos, sin, c.p);

  Mat k, v;
  if (s.kv_shared) {
    const auto& kv = c.shared_kv.at(s.type);  // exactly as the source layer used them
    k = kv.first;
    v = kv.second;
  } else {
    G4_RETURN_IF_ERROR(adapted_linear(c, a, L(l, "self_attn.k_proj.weight"), k));
    if (s.k_eq_v) v = k;  // V = v_norm(raw k_proj): forked before k_norm and RoPE (pitfalls.md P8)
    else G4_RETURN_IF_ERROR(adapted_linear(c, a, L(l, "self_attn.v_proj.weight"), v));
    G4_RETURN_IF_ERROR(norm(c, k, L(l, "self_attn.k_norm.weight"), hd));
    c.ops.rope(k, hd, cos, sin, c.p);
    c.ops.rms_norm(v, nullptr, hd, eps(c), c.p);
    if (s.stores_kv) c.shared_kv[s.type] = {k, v};
  }
  Mat o;
  c.ops.attention(q, k, v, Hq, s.kv_heads, hd, c.masks.at(s.type), o, c.p);
  Mat out;
  G4_RETURN_IF_ERROR(adapted_linear(c, o, L(l, "self_attn.o_proj.weight"), out));
  return out;
}

// Gemma4TextMLP: down(gelu_tanh(gate(x)) · up(x)).
Result<Mat> dense_mlp(Context& c, int l, const Mat& x) {
  Mat gate, up, out;
  G4_RETURN_IF_ERROR(adapted_linear(c, x, L(l, "mlp.gate_proj.weight"), gate));
  G4_RETURN_IF_ERROR(adapted_linear(c, x, L(l, "mlp.up_proj.weight"), up));
  c.ops.gelu_tanh_mul(gate, up, c.p);
  G4_RETURN_IF_ERROR(adapted_linear(c, gate, L(l, "mlp.down_proj.weight"), out));
  return out;
}

// Gemma4TextRouter on the raw residual r: weightless norm · scale · H^-0.5, logits, top-k routing.
Result<Routing> router(Context& c, int l, const Mat& r, LayerTrace* trace) {
  Mat n = r;
  c.ops.rms_norm(n, nullptr, c.cfg.hidden_size, eps(c), c.p);
  G4_ASSIGN_OR_RETURN(std::vector<float> scale, c.w.vector(L(l, "router.scale"), c.p));
  c.ops.scale_columns(n, scale, c.p);
  c.ops.scale(n, std::pow(static_cast<float>(c.cfg.hidden_size), -0.5f), c.p);  // fp32 constant (P24)
  Mat logits;
  G4_RETURN_IF_ERROR(adapted_linear(c, n, L(l, "router.proj.weight"), logits));
  G4_ASSIGN_OR_RETURN(std::vector<float> per_expert, c.w.vector(L(l, "router.per_expert_scale"), c.p));
  if (trace) trace->router_logits = logits;
  return c.ops.route(logits, *c.cfg.top_k_experts, per_expert);
}

// Gemma4TextExperts: each selected expert's GeGLU on its tokens, weighted, summed in ascending expert order.
Result<Mat> experts(Context& c, int l, const Mat& x, const Routing& route) {
  const int64_t E = *c.cfg.num_experts, Ie = *c.cfg.moe_intermediate_size, H = c.cfg.hidden_size;
  Mat out(x.rows, H);
  G4_ASSIGN_OR_RETURN(auto gate_up_lora, delta(c, L(l, "experts.gate_up_proj")));
  G4_ASSIGN_OR_RETURN(auto down_lora, delta(c, L(l, "experts.down_proj")));
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> tokens, slots;
    tokens_of_expert(route, e, tokens, slots);
    if (tokens.empty()) continue;  // unselected experts are never read
    Mat xe(static_cast<int64_t>(tokens.size()), H);
    for (size_t i = 0; i < tokens.size(); ++i) std::copy(x.row(tokens[i]), x.row(tokens[i]) + H, xe.row(static_cast<int64_t>(i)));
    G4_ASSIGN_OR_RETURN(Mat gate_up_w, c.w.slice(L(l, "experts.gate_up_proj"), e, c.p));
    if (gate_up_lora) G4_RETURN_IF_ERROR(merge_into(c.ops, *gate_up_lora, e, gate_up_w, c.p));  // ParamWrapper: W_e + s·B_e·A_e
    Mat gu;
    c.ops.linear(xe, gate_up_w, gu, c.p);
    Mat gate = columns(gu, 0, Ie), up = columns(gu, Ie, Ie);  // rows [0, Ie) of gate_up are gate
    c.ops.gelu_tanh_mul(gate, up, c.p);
    G4_ASSIGN_OR_RETURN(Mat down_w, c.w.slice(L(l, "experts.down_proj"), e, c.p));
    if (down_lora) G4_RETURN_IF_ERROR(merge_into(c.ops, *down_lora, e, down_w, c.p));
    Mat y;
    c.ops.linear(gate, down_w, y, c.p);
    add_expert_output(route, tokens, slots, y, out, c.p);
  }
  return out;
}

// The feed-forward half of a layer: dense MLP, plus the MoE block beside it (its three distinct inputs).
Result<Mat> feed_forward(Context& c, const LayerSpec& s, const Mat& r, LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size;
  Mat m = r;
  G4_RETURN_IF_ERROR(norm(c, m, L(l, "pre_feedforward_layernorm.weight"), H));
  G4_ASSIGN_OR_RETURN(m, dense_mlp(c, l, m));
  if (s.has_moe) {
    G4_RETURN_IF_ERROR(norm(c, m, L(l, "post_feedforward_layernorm_1.weight"), H));
    if (trace) trace->mlp = m;
    G4_ASSIGN_OR_RETURN(Routing route, router(c, l, r, trace));  // the RAW residual (pitfalls.md P21)
    Mat e = r;
    G4_RETURN_IF_ERROR(norm(c, e, L(l, "pre_feedforward_layernorm_2.weight"), H));
    G4_ASSIGN_OR_RETURN(e, experts(c, l, e, route));
    G4_RETURN_IF_ERROR(norm(c, e, L(l, "post_feedforward_layernorm_2.weight"), H));
    if (trace) trace->experts = e;
    c.ops.add(m, e, c.p);
    if (routing) *routing = {l, std::move(route)};
  }
  G4_RETURN_IF_ERROR(norm(c, m, L(l, "post_feedforward_layernorm.weight"), H));  // on the sum for MoE
  if (trace && !s.has_moe) trace->mlp = m;
  return m;
}

// Per-layer embedding injection: x + norm(proj(gelu(gate(x)) · ple_l)).
Result<Mat> ple_block(Context& c, int l, const Mat& x, const Mat& ple) {
  const int64_t D = c.cfg.hidden_size_per_layer_input;
  Mat g;
  G4_RETURN_IF_ERROR(adapted_linear(c, x, L(l, "per_layer_input_gate.weight"), g));
  c.ops.gelu_tanh(g, c.p);
  c.ops.mul(g, columns(ple, l * D, D), c.p);
  Mat p;
  G4_RETURN_IF_ERROR(adapted_linear(c, g, L(l, "per_layer_projection.weight"), p));
  G4_RETURN_IF_ERROR(norm(c, p, L(l, "post_per_layer_input_norm.weight"), c.cfg.hidden_size));
  return p;
}

// Gemma4TextDecoderLayer.forward.
Status decoder_layer(Context& c, const LayerSpec& s, Mat& x, const Mat& ple, LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size;
  Mat a = x;
  G4_RETURN_IF_ERROR(norm(c, a, L(l, "input_layernorm.weight"), H));
  G4_ASSIGN_OR_RETURN(a, attention_block(c, s, a));
  G4_RETURN_IF_ERROR(norm(c, a, L(l, "post_attention_layernorm.weight"), H));
  if (trace) trace->attention = a;
  c.ops.add(x, a, c.p);

  G4_ASSIGN_OR_RETURN(Mat m, feed_forward(c, s, x, routing, trace));
  c.ops.add(x, m, c.p);

  if (s.has_ple) {
    G4_ASSIGN_OR_RETURN(Mat p, ple_block(c, l, x, ple));
    if (trace) trace->ple = p;
    c.ops.add(x, p, c.p);
  }
  G4_ASSIGN_OR_RETURN(std::vector<float> scalar, c.w.vector(L(l, "layer_scalar"), c.p));
  if (scalar.size() != 1) return Status::mismatch("'layers." + std::to_string(l) + ".layer_scalar' is not a single value");
  c.ops.scale(x, scalar[0], c.p);  // scales the whole residual stream, after PLE
  return {};
}

}  // namespace

Result<ForwardResult> hf_forward(const HfWeights& w, const ForwardInput& in, const ForwardOptions& o) {
  if (!o.backend) return Status::internal("hf_forward without a backend");
  G4_RETURN_IF_ERROR(check_supported(w.config()));
  G4_RETURN_IF_ERROR(check_fits(w.config().text, in, o));
  const gemma4::TextConfig& cfg = w.config().text;
  Context c{w, cfg, *o.backend, Precision{o.mode}};
  c.adapters = o.adapters;
  c.T = in.batch * in.seq;

  LayerGeometry geometry = layer_geometry(w.config(), in, c.p);
  c.masks = std::move(geometry.masks);
  c.rope = std::move(geometry.rope);

  ForwardResult r;
  r.batch = in.batch;
  r.seq = in.seq;

  const std::vector<int64_t> ids = llm_input_ids(w.config(), in);
  G4_ASSIGN_OR_RETURN(Mat x, embed_tokens(c, "embed_tokens.weight", ids, cfg.hidden_size));
  Mat ple;
  if (cfg.has_ple()) {
    G4_ASSIGN_OR_RETURN(ple, per_layer_inputs(c, x, ids, {"embed_tokens_per_layer.weight", "per_layer_model_projection.weight",
                                                          "per_layer_projection_norm.weight"}));
  }
  G4_RETURN_IF_ERROR(run_layers(cfg, in, o, x, r, [&](const LayerSpec& s, LayerRouting* routing, LayerTrace* trace) {
    return decoder_layer(c, s, x, ple, routing, trace);
  }));
  // An untied head would be lm_head.weight, outside the text prefix; every Gemma 4 release is tied.
  G4_ASSIGN_OR_RETURN(r.logits, tied_head(c, std::move(x), "norm.weight", "embed_tokens.weight"));
  return r;
}

}  // namespace g4::forward
