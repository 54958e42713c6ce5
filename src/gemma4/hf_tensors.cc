#include "gemma4/hf_tensors.h"

namespace g4::gemma4 {

std::string_view role_name(TensorRole role) {
  switch (role) {
    case TensorRole::kEmbedding: return "embedding";
    case TensorRole::kLinear: return "linear";
    case TensorRole::kExperts: return "experts";
    case TensorRole::kNorm: return "norm";
    case TensorRole::kLayerScalar: return "layer_scalar";
    case TensorRole::kRouterScale: return "router_scale";
    case TensorRole::kExpertScale: return "per_expert_scale";
  }
  return "?";
}

const std::vector<std::string>& tower_prefixes(bool vision) {
  static const std::vector<std::string> kVision = {"model.vision_tower.", "model.embed_vision."};
  static const std::vector<std::string> kAudio = {"model.audio_tower.", "model.embed_audio."};
  return vision ? kVision : kAudio;
}

std::vector<HfTensor> hf_text_tensors(const ModelConfig& config, bool with_shared_kv) {
  const TextConfig& t = config.text;
  const std::string P = config.text_prefix();
  const int64_t H = t.hidden_size, L = t.num_hidden_layers, D = t.hidden_size_per_layer_input;
  std::vector<HfTensor> out;
  auto add = [&](std::string name, Shape shape, TensorRole role, int layer = -1, bool optional = false) {
    out.push_back({std::move(name), std::move(shape), role, layer, optional});
  };

  add(P + "embed_tokens.weight", {t.vocab_size, H}, TensorRole::kEmbedding);
  if (t.has_ple()) {
    add(P + "embed_tokens_per_layer.weight", {t.vocab_size_per_layer_input, L * D}, TensorRole::kEmbedding);
    add(P + "per_layer_model_projection.weight", {L * D, H}, TensorRole::kLinear);
    add(P + "per_layer_projection_norm.weight", {D}, TensorRole::kNorm);
  }
  for (const LayerSpec& s : t.layers) {
    const int l = s.index;
    const std::string p = P + "layers." + std::to_string(l) + ".";
    const int64_t hd = s.head_dim, q_rows = t.num_attention_heads * hd, kv_rows = s.kv_heads * hd;
    add(p + "input_layernorm.weight", {H}, TensorRole::kNorm, l);
    add(p + "self_attn.q_proj.weight", {q_rows, H}, TensorRole::kLinear, l);
    add(p + "self_attn.q_norm.weight", {hd}, TensorRole::kNorm, l);
    // KV-shared layers own no K/V; older E-series uploads still carry them, unused (§2.4).
    const bool kv_optional = s.kv_shared && !with_shared_kv;
    add(p + "self_attn.k_proj.weight", {kv_rows, H}, TensorRole::kLinear, l, kv_optional);
    add(p + "self_attn.k_norm.weight", {hd}, TensorRole::kNorm, l, kv_optional);
    if (!s.k_eq_v) add(p + "self_attn.v_proj.weight", {kv_rows, H}, TensorRole::kLinear, l, kv_optional);
    add(p + "self_attn.o_proj.weight", {H, q_rows}, TensorRole::kLinear, l);
    add(p + "post_attention_layernorm.weight", {H}, TensorRole::kNorm, l);
    add(p + "pre_feedforward_layernorm.weight", {H}, TensorRole::kNorm, l);
    add(p + "mlp.gate_proj.weight", {s.mlp_width, H}, TensorRole::kLinear, l);
    add(p + "mlp.up_proj.weight", {s.mlp_width, H}, TensorRole::kLinear, l);
    add(p + "mlp.down_proj.weight", {H, s.mlp_width}, TensorRole::kLinear, l);
    if (s.has_moe) {
      const int64_t E = *t.num_experts, Ie = *t.moe_intermediate_size;
      add(p + "router.proj.weight", {E, H}, TensorRole::kLinear, l);
      add(p + "router.scale", {H}, TensorRole::kRouterScale, l);
      add(p + "router.per_expert_scale", {E}, TensorRole::kExpertScale, l);
      add(p + "experts.gate_up_proj", {E, 2 * Ie, H}, TensorRole::kExperts, l);
      add(p + "experts.down_proj", {E, H, Ie}, TensorRole::kExperts, l);
      add(p + "post_feedforward_layernorm_1.weight", {H}, TensorRole::kNorm, l);
      add(p + "pre_feedforward_layernorm_2.weight", {H}, TensorRole::kNorm, l);
      add(p + "post_feedforward_layernorm_2.weight", {H}, TensorRole::kNorm, l);
    }
    add(p + "post_feedforward_layernorm.weight", {H}, TensorRole::kNorm, l);
    if (s.has_ple) {
      add(p + "per_layer_input_gate.weight", {D, H}, TensorRole::kLinear, l);
      add(p + "per_layer_projection.weight", {H, D}, TensorRole::kLinear, l);
      add(p + "post_per_layer_input_norm.weight", {H}, TensorRole::kNorm, l);
    }
    add(p + "layer_scalar", {1}, TensorRole::kLayerScalar, l);
  }
  add(P + "norm.weight", {H}, TensorRole::kNorm);
  // Tied head: save_pretrained omits lm_head; an untied config needs it.
  add("lm_head.weight", {t.vocab_size, H}, TensorRole::kEmbedding, -1, t.tie_word_embeddings);
  return out;
}

}  // namespace g4::gemma4
