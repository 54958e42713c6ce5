#include "forward/model_common.h"

#include <algorithm>

#include "forward/rope.h"

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

LayerGeometry layer_geometry(const gemma4::ModelConfig& config, const ForwardInput& in, const Precision& p,
                             int64_t sliding_window_delta) {
  const gemma4::TextConfig& cfg = config.text;
  LayerGeometry g;
  MaskInputs mi{in.batch, in.seq, in.attention_mask, {}};
  const bool vision_groups_apply = config.form == gemma4::ModelForm::kConditional &&
                                   cfg.use_bidirectional_attention == "vision" && !in.mm_token_type_ids.empty();
  if (vision_groups_apply) mi.vision_group = vision_groups(in.mm_token_type_ids, in.batch, in.seq);
  g.masks[gemma4::LayerType::kFull] = full_attention_mask(mi);
  g.masks[gemma4::LayerType::kSliding] = sliding_attention_mask(mi, cfg.sliding_window + sliding_window_delta);
  for (const gemma4::LayerSpec& s : cfg.layers) {
    if (g.rope.count(s.type)) continue;
    const auto& params = s.type == gemma4::LayerType::kFull ? cfg.rope_full : cfg.rope_sliding;
    Mat cos, sin;
    rope_tables(rope_inv_freq(params, s.head_dim), in.position_ids, p, cos, sin);
    g.rope[s.type] = {std::move(cos), std::move(sin)};
  }
  return g;
}

Mat columns(const Mat& x, int64_t first, int64_t count) {
  Mat out(x.rows, count);
  for (int64_t t = 0; t < x.rows; ++t) std::copy(x.row(t) + first, x.row(t) + first + count, out.row(t));
  return out;
}

void tokens_of_expert(const Routing& route, int64_t e, std::vector<int64_t>& tokens, std::vector<int64_t>& slots) {
  tokens.clear();
  slots.clear();
  for (int64_t t = 0; t < route.tokens; ++t)
    for (int64_t k = 0; k < route.top_k; ++k)
      if (route.experts[static_cast<size_t>(t * route.top_k + k)] == e) tokens.push_back(t), slots.push_back(k);
}

void add_expert_output(const Routing& route, const std::vector<int64_t>& tokens, const std::vector<int64_t>& slots, const Mat& y,
                       Mat& out, const Precision& p) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float weight = route.weights[static_cast<size_t>(tokens[i] * route.top_k + slots[i])];
    float* dst = out.row(tokens[i]);
    const float* src = y.row(static_cast<int64_t>(i));
    for (int64_t h = 0; h < out.cols; ++h) dst[h] = p.round(dst[h] + p.round(src[h] * weight));  // bf16 index_add_
  }
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

}  // namespace g4::forward
