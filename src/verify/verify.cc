#include "verify/verify.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace g4::verify {
using forward::Mat;

Metrics compare(const Mat& a, const Mat& b) {
  Metrics m;
  if (a.v.size() != b.v.size()) return {0.0, INFINITY, INFINITY};
  double dot = 0, na = 0, nb = 0, nd = 0;
  for (size_t i = 0; i < a.v.size(); ++i) {
    const double x = a.v[i], y = b.v[i], d = x - y;
    dot += x * y;
    na += x * x;
    nb += y * y;
    nd += d * d;
    m.max_abs = std::max(m.max_abs, std::fabs(d));
  }
  if (!std::isfinite(nd)) return {0.0, INFINITY, INFINITY};
  m.cosine = na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : (na == nb ? 1.0 : 0.0);
  m.rel_err = na > 0 ? std::sqrt(nd / na) : std::sqrt(nd);
  return m;
}

namespace {

double topk_agreement(const forward::Routing& a, const forward::Routing& b) {
  if (a.tokens == 0 || a.tokens != b.tokens || a.top_k != b.top_k) return a.tokens == b.tokens ? 1.0 : 0.0;
  int64_t same = 0;
  for (int64_t t = 0; t < a.tokens; ++t) {
    std::set<int32_t> sa(a.experts.begin() + t * a.top_k, a.experts.begin() + (t + 1) * a.top_k);
    std::set<int32_t> sb(b.experts.begin() + t * b.top_k, b.experts.begin() + (t + 1) * b.top_k);
    same += sa == sb;
  }
  return static_cast<double>(same) / static_cast<double>(a.tokens);
}

std::vector<int64_t> top_ids(const float* x, int64_t n, int k) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  k = static_cast<int>(std::min<int64_t>(k, n));
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int64_t a, int64_t b) { return x[a] != x[b] ? x[a] > x[b] : a < b; });
  ids.resize(static_cast<size_t>(k));
  return ids;
}

LogitsReport compare_logits(const float* a, const float* b, int64_t vocab) {
  LogitsReport r;
  Mat ma(1, vocab), mb(1, vocab);
  std::copy(a, a + vocab, ma.v.begin());
  std::copy(b, b + vocab, mb.v.begin());
  r.metrics = compare(ma, mb);
  const auto ta = top_ids(a, vocab, 5), tb = top_ids(b, vocab, 5);
  r.top1_agrees = ta[0] == tb[0];
  int overlap = 0;
  for (int64_t t : ta) overlap += std::find(tb.begin(), tb.end(), t) != tb.end();
  r.top5_overlap = overlap / static_cast<double>(ta.size());
  const double max_a = *std::max_element(a, a + vocab), max_b = *std::max_element(b, b + vocab);
  double za = 0, zb = 0;
  for (int64_t v = 0; v < vocab; ++v) za += std::exp(a[v] - max_a), zb += std::exp(b[v] - max_b);
  double kl = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double la = a[v] - max_a - std::log(za), lb = b[v] - max_b - std::log(zb);
    kl += std::exp(la) * (la - lb);
  }
  r.kl = std::max(0.0, kl);
  return r;
}

// The first architecture field in which two configs differ ("enable_moe_block: true (HF) vs false (Megatron)"),
// in an order that names the most telling one first; empty when they describe the same model. Fields without
// effect on the structure or the forward (token ids, use_cache, max_position_embeddings, ...) are not compared.
std::string first_structure_difference(const gemma4::ModelConfig& hf, const gemma4::ModelConfig& mcore) {
  if (hf.form != mcore.form)
    return "form: " + std::string(gemma4::form_name(hf.form)) + " (HF) vs " + std::string(gemma4::form_name(mcore.form)) + " (Megatron)";
  static const char* const kFields[] = {
      "num_hidden_layers", "hidden_size", "vocab_size", "layer_types", "enable_moe_block", "num_experts", "top_k_experts",
      "moe_intermediate_size", "intermediate_size", "use_double_wide_mlp", "num_attention_heads", "num_key_value_heads",
      "head_dim", "global_head_dim", "num_global_key_value_heads", "per_layer_config", "attention_k_eq_v",
      "num_kv_shared_layers", "hidden_size_per_layer_input", "vocab_size_per_layer_input", "sliding_window",
      "tie_word_embeddings", "attention_bias", "hidden_activation", "final_logit_softcapping", "use_bidirectional_attention",
      "rope_parameters", "rms_norm_eps"};
  const nlohmann::json a = gemma4::text_config_to_json(hf.text), b = gemma4::text_config_to_json(mcore.text);
  for (const char* field : kFields) {
    const nlohmann::json& x = a.contains(field) ? a[field] : nlohmann::json();
    const nlohmann::json& y = b.contains(field) ? b[field] : nlohmann::json();
    if (x != y) return std::string(field) + ": " + x.dump() + " (HF) vs " + y.dump() + " (Megatron)";
  }
  return {};
}

}  // namespace

Result<VerifyReport> verify(const forward::HfWeights& hf, const forward::McoreWeights& mcore, const forward::ForwardInput& in,
                            forward::Backend& backend, const VerifyOptions& options) {
  const auto& cfg = hf.config().text;
  // Two checkpoints of different structure have nothing to compare layer by layer: refused up front.
  if (const std::string d = first_structure_difference(hf.config(), mcore.config()); !d.empty())
    return Status::mismatch("the HF and Megatron checkpoints describe different models (" + d + "): " + mcore.iteration_dir().string());
  std::vector<forward::LayerTrace> trace_hf, trace_mc;
  forward::ForwardOptions o;
  o.mode = options.mode;
  o.backend = &backend;
  o.keep_hidden = true;
  o.trace = &trace_hf;
  o.adapters = options.hf_adapters;
  G4_ASSIGN_OR_RETURN(forward::ForwardResult a, forward::hf_forward(hf, in, o));
  o.trace = &trace_mc;
  o.adapters = options.mcore_adapters;
  if (options.megatron_backend) o.backend = options.megatron_backend;
  auto b_result = forward::mcore_forward(mcore, in, o);
  if (!b_result.ok()) return b_result.status().with_context("Megatron forward");
  forward::ForwardResult b = std::move(*b_result);

  VerifyReport r;
  r.mode = options.mode == forward::ComputeMode::kBF16 ? "bf16" : "fp32";
  r.backend = backend.describe();
  r.thresholds = options.thresholds;
  const double block_thr = options.thresholds.block_rel_err;
  auto flag = [&](int layer, const std::string& block) {
    if (!r.first_divergent_layer) {
      r.first_divergent_layer = layer;
      r.first_divergent_block = block;
    }
  };
  r.embedding = compare(a.hidden[0], b.hidden[0]);
  if (r.embedding.rel_err > block_thr) flag(-1, "embedding");
  double entering = r.embedding.rel_err;  // relative error of the residual entering the next layer

  size_t moe_index = 0;
  for (const auto& s : cfg.layers) {
    LayerReport lr;
    lr.layer = s.index;
    lr.type = s.type == gemma4::LayerType::kFull ? "full" : "sliding";
    lr.residual = compare(a.hidden[s.index + 1], b.hidden[s.index + 1]);
    const auto& ta = trace_hf[static_cast<size_t>(s.index)];
    const auto& tb = trace_mc[static_cast<size_t>(s.index)];
    lr.blocks.push_back({"attention", compare(ta.attention, tb.attention)});
    lr.blocks.push_back({"mlp", compare(ta.mlp, tb.mlp)});
    if (s.has_moe) {
      lr.blocks.push_back({"router", compare(ta.router_logits, tb.router_logits)});
      lr.blocks.push_back({"experts", compare(ta.experts, tb.experts)});
      lr.router_topk_agreement = topk_agreement(a.routing[moe_index].routing, b.routing[moe_index].routing);
      ++moe_index;
    }
    if (s.has_ple) lr.blocks.push_back({"ple", compare(ta.ple, tb.ple)});
    // In data-flow order, the first sub-block that differs; the scalar when only the residual does.
    const double limit = std::max(block_thr, options.thresholds.growth * entering);
    for (const auto& [name, m] : lr.blocks) {
      const bool router_flip = name == "router" && lr.router_topk_agreement && *lr.router_topk_agreement < 1.0;
      if (m.rel_err > limit || router_flip) {
        lr.divergent_block = name;
        break;
      }
    }
    if (lr.divergent_block.empty() && lr.residual.rel_err > limit) lr.divergent_block = "scalar";
    entering = lr.residual.rel_err;
    if (!lr.divergent_block.empty()) flag(s.index, lr.divergent_block);
    if (options.mode == forward::ComputeMode::kF32 && lr.residual.cosine < options.thresholds.layer_cosine)
      r.failures.push_back("layer " + std::to_string(s.index) + " residual cosine " + std::to_string(lr.residual.cosine) + " < " +
                           std::to_string(options.thresholds.layer_cosine));
    r.layers.push_back(std::move(lr));
  }

  const int64_t V = a.logits.cols;
  bool logits_differ = false;
  for (int64_t row = 0; row < a.logits.rows; ++row) {
    LogitsReport lr = compare_logits(a.logits.row(row), b.logits.row(row), V);
    lr.row = row;
    lr.position = a.last_real[static_cast<size_t>(row)];
    logits_differ |= lr.metrics.rel_err > std::max(block_thr, options.thresholds.growth * entering);
    const double thr = options.mode == forward::ComputeMode::kBF16 ? options.thresholds.logits_cosine : options.thresholds.layer_cosine;
    if (lr.metrics.cosine < thr)
      r.failures.push_back("row " + std::to_string(row) + " logits cosine " + std::to_string(lr.metrics.cosine) + " < " + std::to_string(thr));
    if (!lr.top1_agrees) r.failures.push_back("row " + std::to_string(row) + " top-1 token differs");
    r.logits.push_back(lr);
  }
  if (logits_differ) flag(static_cast<int>(cfg.layers.size()), "head");
  if (r.first_divergent_layer)
    r.failures.push_back("divergence starts at " +
                         (*r.first_divergent_layer < 0 ? std::string("the embedding")
                          : *r.first_divergent_layer >= static_cast<int>(cfg.layers.size()) ? std::string("the head")
                                                                                             : "layer " + std::to_string(*r.first_divergent_layer)) +
                         " (" + r.first_divergent_block + ")");
  r.passed = r.failures.empty();
  return r;
}

}  // namespace g4::verify
