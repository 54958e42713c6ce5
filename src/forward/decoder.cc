#include "forward/decoder.h"

#include <cmath>
#include <map>
#include <numeric>

#include "forward/model_common.h"
#include "forward/routing.h"

namespace g4::forward {
namespace {

using gemma4::LayerSpec;
using gemma4::LayerType;

// Everything a layer needs besides its weights, built once per forward.
struct Run {
  const WeightReader& w;
  const Side& side;
  const gemma4::TextConfig& cfg;
  Backend& ops;
  Precision p;
  const AdapterSource* adapters;
  std::map<LayerType, AttentionMask> masks;
  std::map<LayerType, std::pair<Tensor, Tensor>> rope;       // cos, sin [T, hd] on the device
  std::map<LayerType, std::pair<Tensor, Tensor>> shared_kv;  // K, V stored by the last owner of each type

  float eps() const { return static_cast<float>(cfg.rms_norm_eps); }
  // The adapters' own precision: PEFT upcasts to fp32, Megatron-Bridge runs them in the model dtype.
  Precision inner() const { return side.adapters == AdapterStyle::kPeft ? Precision{} : p; }
};

Result<Tensor> weight(Run& c, const std::string& name) {
  G4_ASSIGN_OR_RETURN(Tensor host, c.w.matrix(name));
  return c.ops.weight(host, c.p);
}

Status norm(Run& c, Tensor& x, const std::string& name, int64_t dim) {
  G4_ASSIGN_OR_RETURN(std::vector<float> w, c.w.vector(name, c.p));
  if (static_cast<int64_t>(w.size()) != dim) return Status::mismatch("'" + name + "' has the wrong length");
  const Tensor wt = c.ops.parameter(w, c.p);
  c.ops.rms_norm(x, &wt, dim, c.eps(), c.p);
  return {};
}

Result<std::shared_ptr<const LowRank>> delta(Run& c, const std::string& name) {
  if (!c.adapters) return std::shared_ptr<const LowRank>();
  return c.adapters->delta(c.side.adapter_prefix + name);
}

// The base linear plus its adapter, if any, on the same input (lora.Linear / LoRALinear).
Result<Tensor> adapted_linear(Run& c, const Tensor& x, const std::string& name) {
  G4_ASSIGN_OR_RETURN(Tensor w, weight(c, name));
  Tensor out = c.ops.linear(x, w, c.p);
  G4_ASSIGN_OR_RETURN(auto d, delta(c, name));
  if (d) G4_RETURN_IF_ERROR(add_unmerged(c.ops, *d, 0, x, out, c.inner(), c.p));
  return out;
}

std::vector<int64_t> iota(int64_t first, int64_t count) {
  std::vector<int64_t> v(static_cast<size_t>(count));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Megatron's fused linear_qkv output [q heads; k; v] per query group, as the column indices of q, k and v.
struct QkvColumns {
  std::vector<int64_t> q, k, v;
};
QkvColumns qkv_columns(int64_t nq, int64_t ng, int64_t hd) {
  QkvColumns c;
  const int64_t per = nq / ng;
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t group = g * (per + 2) * hd;
    for (int64_t i = 0; i < per * hd; ++i) c.q.push_back(group + i);
    for (int64_t i = 0; i < hd; ++i) c.k.push_back(group + per * hd + i);
    for (int64_t i = 0; i < hd; ++i) c.v.push_back(group + (per + 1) * hd + i);
  }
  return c;
}

// The q/k/v projections: one fused matmul split per query group (Megatron), or three (HF). On K=V layers V is
// the raw K projection (forked before k_norm and RoPE, pitfalls.md P8; Megatron ignores its V slot); on
// KV-shared layers only q is projected.
Status project_qkv(Run& c, const LayerSpec& s, const Tensor& a, Tensor& q, Tensor& k, Tensor& v) {
  const int l = s.index;
  const int64_t hd = s.head_dim, nq = c.cfg.num_attention_heads, ng = s.kv_heads;
  if (!c.side.fused_qkv.empty()) {
    const std::string name = c.side.at(l, c.side.fused_qkv);
    G4_ASSIGN_OR_RETURN(Tensor qkv, adapted_linear(c, a, name));
    if (qkv.cols() != (nq + 2 * ng) * hd) return Status::mismatch(name + " has the wrong row count");
    const QkvColumns cols = qkv_columns(nq, ng, hd);
    q = c.ops.select_columns(qkv, cols.q);
    if (s.kv_shared) return {};
    k = c.ops.select_columns(qkv, cols.k);
    v = s.k_eq_v ? c.ops.copy(k) : c.ops.select_columns(qkv, cols.v);
    return {};
  }
  G4_ASSIGN_OR_RETURN(q, adapted_linear(c, a, c.side.at(l, c.side.q_proj)));
  if (s.kv_shared) return {};
  G4_ASSIGN_OR_RETURN(k, adapted_linear(c, a, c.side.at(l, c.side.k_proj)));
  if (s.k_eq_v) {
    v = c.ops.copy(k);
  } else {
    G4_ASSIGN_OR_RETURN(v, adapted_linear(c, a, c.side.at(l, c.side.v_proj)));
  }
  return {};
}

// Gemma4TextAttention: q/k norms before RoPE, weightless v_norm, K/V of the source layer on KV-shared layers,
// scale 1.0. `proj_lora`: the output projection's adapter when it goes after the post-attention norm.
Result<Tensor> attention_block(Run& c, const LayerSpec& s, const Tensor& a, Tensor& proj_lora) {
  const int l = s.index;
  const int64_t hd = s.head_dim, nq = c.cfg.num_attention_heads;
  const auto& [cos, sin] = c.rope.at(s.type);
  Tensor q, k, v;
  G4_RETURN_IF_ERROR(project_qkv(c, s, a, q, k, v));
  G4_RETURN_IF_ERROR(norm(c, q, c.side.at(l, c.side.q_norm), hd));
  c.ops.rope(q, hd, cos, sin, c.p);
  if (s.kv_shared) {
    const auto& kv = c.shared_kv.at(s.type);  // exactly as the source layer used them (never written after)
    k = kv.first;
    v = kv.second;
  } else {
    G4_RETURN_IF_ERROR(norm(c, k, c.side.at(l, c.side.k_norm), hd));
    c.ops.rope(k, hd, cos, sin, c.p);
    c.ops.rms_norm(v, nullptr, hd, c.eps(), c.p);
    if (s.stores_kv) c.shared_kv[s.type] = {k, v};
  }
  const Tensor o = c.ops.attention(q, k, v, nq, s.kv_heads, hd, c.masks.at(s.type), c.p);
  const std::string proj = c.side.at(l, c.side.o_proj);
  if (!c.side.proj_adapter_after_post_norm) return adapted_linear(c, o, proj);
  G4_ASSIGN_OR_RETURN(Tensor w, weight(c, proj));
  Tensor out = c.ops.linear(o, w, c.p);
  G4_ASSIGN_OR_RETURN(auto d, delta(c, proj));
  if (d) {
    proj_lora = c.ops.zeros(o.rows(), out.cols());
    G4_RETURN_IF_ERROR(add_unmerged(c.ops, *d, 0, o, proj_lora, c.p, Precision{}));
  }
  return out;
}

// A gated MLP: down(gelu_tanh(gate(x)) · up(x)), gate and up from one fused fc1 (chunk(2)) or two projections.
Result<Tensor> gated_mlp(Run& c, int l, const MlpNames& n, const Tensor& x) {
  Tensor gate, up;
  if (!n.fc1.empty()) {
    G4_ASSIGN_OR_RETURN(Tensor h, adapted_linear(c, x, c.side.at(l, n.fc1)));
    const int64_t half = h.cols() / 2;
    gate = c.ops.select_columns(h, iota(0, half));
    up = c.ops.select_columns(h, iota(half, half));
  } else {
    G4_ASSIGN_OR_RETURN(gate, adapted_linear(c, x, c.side.at(l, n.gate)));
    G4_ASSIGN_OR_RETURN(up, adapted_linear(c, x, c.side.at(l, n.up)));
  }
  c.ops.gelu_tanh_mul(gate, up, c.p);
  return adapted_linear(c, gate, c.side.at(l, n.down));
}

// Gemma4TextRouter on the raw residual r: weightless norm · scale · H^-0.5, logits, top-k routing on the host.
Result<Routing> router(Run& c, int l, const Tensor& r, LayerTrace* trace) {
  const int64_t H = c.cfg.hidden_size;
  Tensor n = c.ops.copy(r);
  c.ops.rms_norm(n, nullptr, H, c.eps(), c.p);
  G4_ASSIGN_OR_RETURN(std::vector<float> scale, c.w.vector(c.side.at(l, c.side.moe.router_scale), c.p));
  c.ops.scale_columns(n, c.ops.parameter(scale, c.p), c.p);
  c.ops.scale(n, std::pow(static_cast<float>(H), -0.5f), c.p);  // fp32 constant (P24)
  const std::string proj = c.side.at(l, c.side.moe.router_proj);
  Tensor logits;
  if (c.side.adapters == AdapterStyle::kPeft) {
    G4_ASSIGN_OR_RETURN(logits, adapted_linear(c, n, proj));
  } else {
    G4_ASSIGN_OR_RETURN(Tensor w, weight(c, proj));
    logits = c.ops.linear(n, w, c.p);
    // LoRATopKRouter: the adapter sees the router's input (the raw residual), not the normed one gating projects.
    G4_ASSIGN_OR_RETURN(auto d, delta(c, proj));
    if (d) G4_RETURN_IF_ERROR(add_unmerged(c.ops, *d, 0, r, logits, c.inner(), c.p));
  }
  G4_ASSIGN_OR_RETURN(std::vector<float> per_expert, c.w.vector(c.side.at(l, c.side.moe.per_expert_scale), c.p));
  Mat host_logits = c.ops.download(logits);
  Routing route = forward::route(host_logits, *c.cfg.top_k_experts, per_expert);
  if (trace) trace->router_logits = std::move(host_logits);
  return route;
}

// One MoE layer's expert stacks for the grouped op, with the side's expert adapters: PEFT's ParamWrapper merges
// W_e + s·B_e·A_e; Megatron-Bridge adds s·B_e·(A_e·x) on the expert's routed tokens.
class LayerExperts final : public ExpertWeights {
 public:
  LayerExperts(Run& c, int l) : c_(c), gate_up_(c.side.at(l, c.side.moe.gate_up)), down_(c.side.at(l, c.side.moe.down)) {}
  Status load_adapters() {
    G4_ASSIGN_OR_RETURN(gate_up_lora_, delta(c_, gate_up_));
    G4_ASSIGN_OR_RETURN(down_lora_, delta(c_, down_));
    return {};
  }
  Result<Tensor> gate_up(int64_t e) override { return expert(gate_up_, gate_up_lora_, e); }
  Result<Tensor> down(int64_t e) override { return expert(down_, down_lora_, e); }
  Status adapt_gate_up(int64_t e, const Tensor& x, Tensor& h) override { return unmerged(gate_up_lora_, e, x, h); }
  Status adapt_down(int64_t e, const Tensor& x, Tensor& y) override { return unmerged(down_lora_, e, x, y); }

 private:
  bool merged() const { return c_.side.adapters == AdapterStyle::kPeft; }
  Result<Tensor> expert(const std::string& name, const std::shared_ptr<const LowRank>& d, int64_t e) {
    G4_ASSIGN_OR_RETURN(Tensor host, c_.w.slice(name, e));
    if (!d || !merged()) return c_.ops.weight(host, c_.p);
    Mat w(host.rows(), host.cols());
    to_f32(host.dtype(), host.raw(), w.v.data(), w.v.size());
    c_.p.round(w);  // the parameter in the model dtype
    G4_RETURN_IF_ERROR(merge_into(*d, e, w, c_.p));
    Tensor merged_host = Tensor::host(DType::kF32, w.rows, w.cols);
    std::copy(w.v.begin(), w.v.end(), merged_host.f32());
    return c_.ops.weight(merged_host, c_.p);
  }
  Status unmerged(const std::shared_ptr<const LowRank>& d, int64_t e, const Tensor& x, Tensor& out) {
    return d && !merged() ? add_unmerged(c_.ops, *d, e, x, out, c_.p, c_.p) : Status();
  }

  Run& c_;
  std::string gate_up_, down_;
  std::shared_ptr<const LowRank> gate_up_lora_, down_lora_;
};

// The feed-forward half of a layer on the residual r: the gated MLP, plus on MoE layers the routed experts beside
// it (router on the raw residual, pitfalls.md P21), their sum normed once more.
Result<Tensor> feed_forward(Run& c, const LayerSpec& s, const Tensor& r, LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size;
  const MlpNames& mlp = s.has_moe ? c.side.shared : c.side.dense;
  Tensor m = c.ops.copy(r);
  G4_RETURN_IF_ERROR(norm(c, m, c.side.at(l, mlp.pre_norm), H));
  G4_ASSIGN_OR_RETURN(m, gated_mlp(c, l, mlp, m));
  G4_RETURN_IF_ERROR(norm(c, m, c.side.at(l, mlp.post_norm), H));
  if (trace) trace->mlp = c.ops.download(m);
  if (!s.has_moe) return m;

  G4_ASSIGN_OR_RETURN(Routing route, router(c, l, r, trace));
  Tensor x = c.ops.copy(r);
  G4_RETURN_IF_ERROR(norm(c, x, c.side.at(l, c.side.moe.pre_norm), H));
  LayerExperts experts(c, l);
  G4_RETURN_IF_ERROR(experts.load_adapters());
  G4_ASSIGN_OR_RETURN(Tensor e, c.ops.experts(x, route, experts, H, c.p));
  G4_RETURN_IF_ERROR(norm(c, e, c.side.at(l, c.side.moe.post_norm), H));
  if (trace) trace->experts = c.ops.download(e);
  c.ops.add(m, e, c.p);
  G4_RETURN_IF_ERROR(norm(c, m, c.side.at(l, c.side.moe.sum_post_norm), H));
  if (routing) *routing = {l, std::move(route)};
  return m;
}

// Per-layer embedding injection: norm(proj(gelu(gate(x)) · ple_l)), added to the residual by the caller.
Result<Tensor> ple_block(Run& c, int l, const Tensor& x, const Tensor& ple) {
  const int64_t D = c.cfg.hidden_size_per_layer_input;
  G4_ASSIGN_OR_RETURN(Tensor g, adapted_linear(c, x, c.side.at(l, c.side.ple_gate)));
  c.ops.gelu_tanh(g, c.p);
  c.ops.mul(g, c.ops.select_columns(ple, iota(l * D, D)), c.p);
  G4_ASSIGN_OR_RETURN(Tensor p, adapted_linear(c, g, c.side.at(l, c.side.ple_layer_projection)));
  G4_RETURN_IF_ERROR(norm(c, p, c.side.at(l, c.side.ple_post_norm), c.cfg.hidden_size));
  return p;
}

// Gemma4TextDecoderLayer.forward on the residual x, in place.
Status decoder_layer(Run& c, const LayerSpec& s, Tensor& x, const Tensor& ple, LayerRouting* routing, LayerTrace* trace) {
  const int l = s.index;
  const int64_t H = c.cfg.hidden_size;
  Tensor a = c.ops.copy(x);
  G4_RETURN_IF_ERROR(norm(c, a, c.side.at(l, c.side.input_norm), H));
  Tensor proj_lora;
  G4_ASSIGN_OR_RETURN(a, attention_block(c, s, a, proj_lora));
  G4_RETURN_IF_ERROR(norm(c, a, c.side.at(l, c.side.post_attention_norm), H));
  if (proj_lora.defined()) c.ops.add(a, proj_lora, c.p);
  if (trace) trace->attention = c.ops.download(a);
  c.ops.add(x, a, c.p);

  G4_ASSIGN_OR_RETURN(Tensor m, feed_forward(c, s, x, routing, trace));
  c.ops.add(x, m, c.p);

  if (s.has_ple) {
    G4_ASSIGN_OR_RETURN(Tensor p, ple_block(c, l, x, ple));
    if (trace) trace->ple = c.ops.download(p);
    c.ops.add(x, p, c.p);
  }
  const std::string scalar_name = c.side.at(l, c.side.layer_scalar);
  G4_ASSIGN_OR_RETURN(std::vector<float> scalar, c.w.vector(scalar_name, c.p));
  if (scalar.size() != 1) return Status::mismatch("'" + scalar_name + "' is not a single value");
  c.ops.scale(x, scalar[0], c.p);  // scales the whole residual stream, after PLE
  return {};
}

// Gemma4TextScaledWordEmbedding: E[ids] · embed_scale, the scale cast to the weight dtype first.
Result<Tensor> embed(Run& c, const std::string& table, const std::vector<int64_t>& ids, int64_t width) {
  G4_ASSIGN_OR_RETURN(Mat h, c.w.rows(table, ids, c.p));
  Tensor t = c.ops.upload(h);
  c.ops.scale(t, c.p.round(std::sqrt(static_cast<float>(width))), c.p);
  return t;
}

// get_per_layer_inputs + project_per_layer_inputs: [T, L·D], layer l reads columns [l·D, (l+1)·D).
Result<Tensor> per_layer_inputs(Run& c, const Tensor& h0, const std::vector<int64_t>& ids) {
  const int64_t D = c.cfg.hidden_size_per_layer_input;
  G4_ASSIGN_OR_RETURN(Tensor raw, embed(c, c.side.ple_table, ids, D));
  G4_ASSIGN_OR_RETURN(Tensor proj, adapted_linear(c, h0, c.side.ple_projection));
  c.ops.scale(proj, std::pow(static_cast<float>(c.cfg.hidden_size), -0.5f), c.p);
  G4_RETURN_IF_ERROR(norm(c, proj, c.side.ple_norm, D));  // one norm over each layer's D slice
  c.ops.add(proj, raw, c.p);
  c.ops.scale(proj, std::pow(2.0f, -0.5f), c.p);
  return proj;
}

// Final norm, the tied head over vocabulary blocks of the embedding table, the final softcap.
Result<Mat> tied_head(Run& c, Tensor h) {
  constexpr int64_t kHeadBlockRows = 8192;  // vocab rows turned into the GEMM's type at a time
  G4_RETURN_IF_ERROR(norm(c, h, c.side.final_norm, c.cfg.hidden_size));
  G4_ASSIGN_OR_RETURN(const int64_t vocab, c.w.row_count(c.side.embed));
  Tensor logits = c.ops.empty(h.rows(), vocab);
  for (int64_t first = 0; first < vocab; first += kHeadBlockRows) {
    const int64_t n = std::min(kHeadBlockRows, vocab - first);
    G4_ASSIGN_OR_RETURN(Tensor block, c.w.row_block(c.side.embed, first, n));
    c.ops.write_columns(logits, first, c.ops.linear(h, c.ops.weight(block, c.p), c.p));
  }
  if (c.cfg.final_logit_softcapping) c.ops.softcap(logits, static_cast<float>(*c.cfg.final_logit_softcapping), c.p);
  return c.ops.download(logits);
}

}  // namespace

Result<ForwardResult> run_decoder(const WeightReader& w, const Side& side, const ForwardInput& in, const ForwardOptions& o) {
  if (!o.backend) return Status::internal("forward without a backend");
  const gemma4::ModelConfig& config = w.config();
  G4_RETURN_IF_ERROR(check_supported(config));
  G4_RETURN_IF_ERROR(check_fits(config.text, in, o));
  const gemma4::TextConfig& cfg = config.text;
  Run c{w, side, cfg, *o.backend, Precision{o.mode}, o.adapters, {}, {}, {}};
  LayerGeometry geometry = layer_geometry(config, in, c.p);
  c.masks = std::move(geometry.masks);
  for (auto& [type, tables] : geometry.rope) c.rope[type] = {c.ops.upload(tables.first), c.ops.upload(tables.second)};

  ForwardResult r;
  r.batch = in.batch;
  r.seq = in.seq;
  for (int64_t b = 0; b < in.batch; ++b) r.last_real.push_back(in.last_real(b));
  const std::vector<int64_t> ids = llm_input_ids(config, in);
  G4_ASSIGN_OR_RETURN(Tensor x, embed(c, side.embed, ids, cfg.hidden_size));
  Tensor ple;
  if (cfg.has_ple()) {
    G4_ASSIGN_OR_RETURN(ple, per_layer_inputs(c, x, ids));
  }
  if (o.keep_hidden) r.hidden.push_back(c.ops.download(x));
  for (const LayerSpec& s : cfg.layers) {
    LayerRouting routing;
    LayerTrace* trace = o.trace ? &o.trace->emplace_back() : nullptr;
    Status st = decoder_layer(c, s, x, ple, s.has_moe ? &routing : nullptr, trace);
    if (!st.ok()) return st.with_context("layer " + std::to_string(s.index));
    if (s.has_moe) r.routing.push_back(std::move(routing));
    if (o.keep_hidden) r.hidden.push_back(c.ops.download(x));
    if (o.on_layer) o.on_layer(s.index + 1, static_cast<int>(cfg.layers.size()));
  }
  if (!o.all_logits) {  // only each row's last real token goes through the head
    std::vector<int64_t> last;
    for (int64_t b = 0; b < in.batch; ++b) last.push_back(b * in.seq + r.last_real[static_cast<size_t>(b)]);
    x = c.ops.gather_rows(x, last);
  }
  // An untied head would be lm_head.weight, outside the text prefix; every Gemma 4 release is tied.
  G4_ASSIGN_OR_RETURN(r.logits, tied_head(c, std::move(x)));
  return r;
}

}  // namespace g4::forward
