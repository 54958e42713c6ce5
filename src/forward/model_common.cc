#include "forward/model_common.h"

#include <unistd.h>

#include <algorithm>

#include "forward/rope.h"
#include "runtime/text_file.h"

namespace g4::forward {

std::vector<int64_t> llm_input_ids(const gemma4::ModelConfig& config, const ForwardInput& in) {
  std::vector<int64_t> ids = in.input_ids;
  if (config.form != gemma4::ModelForm::kConditional) return ids;
  auto field = [&](const char* key, int64_t fallback) {
    const auto& wf = config.wrapper_fields;
    return wf.contains(key) && wf[key].is_number_integer() ? wf[key].get<int64_t>() : fallback;
  };
  const int64_t image = field("image_token_id", 258880), video = field("video_token_id", 258884),
                audio = field("audio_token_id", 258881);
  const int64_t pad = config.text.pad_token_id.is_number_integer() ? config.text.pad_token_id.get<int64_t>() : 0;
  for (int64_t& id : ids)
    if (id == image || id == video || id == audio) id = pad;
  return ids;
}

LayerGeometry layer_geometry(const gemma4::ModelConfig& config, const ForwardInput& in, const Precision& p) {
  const gemma4::TextConfig& cfg = config.text;
  LayerGeometry g;
  MaskInputs mi{in.batch, in.seq, in.attention_mask, {}};
  const bool vision_groups_apply = config.form == gemma4::ModelForm::kConditional &&
                                   cfg.use_bidirectional_attention == "vision" && !in.mm_token_type_ids.empty();
  if (vision_groups_apply) mi.vision_group = vision_groups(in.mm_token_type_ids, in.batch, in.seq);
  g.masks[gemma4::LayerType::kFull] = full_attention_mask(mi);
  g.masks[gemma4::LayerType::kSliding] = sliding_attention_mask(mi, cfg.sliding_window);
  for (const gemma4::LayerSpec& s : cfg.layers) {
    if (g.rope.count(s.type)) continue;
    const auto& params = s.type == gemma4::LayerType::kFull ? cfg.rope_full : cfg.rope_sliding;
    Mat cos, sin;
    rope_tables(rope_inv_freq(params, s.head_dim), in.position_ids, p, cos, sin);
    g.rope[s.type] = {std::move(cos), std::move(sin)};
  }
  return g;
}

Status check_supported(const gemma4::ModelConfig& config) {
  const auto& t = config.text;
  if (t.hidden_activation != "gelu_pytorch_tanh" && t.hidden_activation != "gelu_tanh")
    return Status::not_supported("hidden_activation '" + t.hidden_activation + "': the forward implements gelu_pytorch_tanh");
  if (t.use_bidirectional_attention == "all")
    return Status::not_supported("use_bidirectional_attention 'all' (embedding models) is not supported by the forward");
  if (!t.tie_word_embeddings) return Status::not_supported("untied lm_head: every Gemma 4 release ties it");
  if (t.attention_bias) return Status::not_supported("attention_bias: no Gemma 4 release has attention biases");
  return {};
}

double forward_activation_bytes(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o) {
  auto f = [](int64_t v) { return static_cast<double>(v); };
  double hd = 0, kv = 0, mlp = 0;
  for (const gemma4::LayerSpec& s : cfg.layers)
    hd = std::max(hd, f(s.head_dim)), kv = std::max(kv, f(s.kv_heads)), mlp = std::max(mlp, f(s.mlp_width));
  const double T = f(in.batch) * f(in.seq), H = f(cfg.hidden_size), Hq = f(cfg.num_attention_heads);
  const double L = f(cfg.layers.size()), V = f(cfg.vocab_size), D = f(cfg.hidden_size_per_layer_input);
  const double E = f(cfg.num_experts.value_or(0)), Ie = f(cfg.moe_intermediate_size.value_or(0));
  double per_token = 6 * H                 // residual, its normed copy, block outputs, MoE copies
                     + 2 * Hq * hd + 6 * kv * hd  // q and attention output; k, v and the K/V kept per layer type
                     + 3 * mlp               // gate, up and their product
                     + 4 * hd;               // RoPE cos and sin per layer type
  if (cfg.has_ple()) per_token += 3 * L * D;  // raw, projected and combined per-layer inputs
  if (cfg.enable_moe_block) per_token += 2 * E + 4 * Ie + 2 * H;  // router logits, gate_up, expert in/out
  if (o.all_logits) per_token += V;
  if (o.keep_hidden) per_token += (L + 1) * H;
  if (o.trace) per_token += L * (4 * H + E);
  const double weight = std::max({(Hq + 2 * kv) * hd * H, 2 * mlp * H, 8192 * H, L * D * H, 2 * Ie * H});
  return 4 * (T * per_token + f(in.batch) * V + 2 * weight);
}

Status check_fits(const gemma4::TextConfig& cfg, const ForwardInput& in, const ForwardOptions& o) {
  if (cfg.max_position_embeddings > 0 && in.seq > cfg.max_position_embeddings)
    return Status::invalid_argument("input rows have " + std::to_string(in.seq) + " tokens, more than the model's context " +
                                    "(max_position_embeddings " + std::to_string(cfg.max_position_embeddings) + ")");
  uint64_t limit = o.memory_limit;
  if (limit == 0) limit = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const double need = forward_activation_bytes(cfg, in, o);
  if (need > static_cast<double>(limit)) {
    const std::string need_text = need >= 1.8e19 ? "more than 16 EiB" : "about " + human_bytes(static_cast<uint64_t>(need));
    return Status::invalid_argument("input of " + std::to_string(in.batch) + " × " + std::to_string(in.seq) + " tokens needs " +
                                    need_text + " of activations, more than the " + human_bytes(limit) +
                                    (o.memory_limit ? " limit" : " of memory this machine has") +
                                    " (activations grow with tokens × hidden, attention and MLP widths" +
                                    (o.keep_hidden || o.trace ? " × layers kept" : "") + ")");
  }
  return {};
}

}  // namespace g4::forward
