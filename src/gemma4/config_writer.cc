// config.json output: every architecture field explicit (pitfalls.md P6: transformers' class defaults,
// e.g. hidden_size_per_layer_input=256, are not the checkpoint's).
#include "gemma4/config.h"

namespace g4::gemma4 {
using json = nlohmann::json;

namespace {

json optional_json(const std::optional<int64_t>& v) { return v ? json(*v) : json(); }

// The full-layer geometry in the released flat form, when every layer fits it.
struct FlatGlobal {
  bool expressible = true;
  int64_t head_dim = 0;
  std::optional<int64_t> kv_heads;
};

FlatGlobal flat_global(const TextConfig& t) {
  FlatGlobal f;
  f.head_dim = t.global_head_dim;
  for (const LayerSpec& s : t.layers) {
    if (s.type == LayerType::kSliding) {
      if (s.head_dim != t.head_dim || s.kv_heads != t.num_key_value_heads) f.expressible = false;
      continue;
    }
    f.head_dim = s.head_dim;
    if (s.k_eq_v) f.kv_heads = s.kv_heads;
    else if (s.kv_heads != t.num_key_value_heads) f.expressible = false;
  }
  for (const LayerSpec& s : t.layers)
    if (s.type == LayerType::kFull && (s.head_dim != f.head_dim || (s.k_eq_v && s.kv_heads != f.kv_heads))) f.expressible = false;
  return f;
}

}  // namespace

json text_config_to_json(const TextConfig& t) {
  json j;
  j["model_type"] = "gemma4_text";
  j["vocab_size"] = t.vocab_size;
  j["hidden_size"] = t.hidden_size;
  j["intermediate_size"] = t.intermediate_size;
  j["num_hidden_layers"] = t.num_hidden_layers;
  j["num_attention_heads"] = t.num_attention_heads;
  j["num_key_value_heads"] = t.num_key_value_heads;
  j["head_dim"] = t.head_dim;
  j["hidden_activation"] = t.hidden_activation;
  j["max_position_embeddings"] = t.max_position_embeddings;
  j["initializer_range"] = t.initializer_range;
  j["rms_norm_eps"] = t.rms_norm_eps;
  j["use_cache"] = t.use_cache;
  j["pad_token_id"] = t.pad_token_id;
  j["eos_token_id"] = t.eos_token_id;
  j["bos_token_id"] = t.bos_token_id;
  j["tie_word_embeddings"] = t.tie_word_embeddings;
  j["rope_parameters"] = {{"sliding_attention", t.rope_sliding.to_json()}, {"full_attention", t.rope_full.to_json()}};
  j["attention_bias"] = t.attention_bias;
  j["attention_dropout"] = t.attention_dropout;
  j["sliding_window"] = t.sliding_window;
  json types = json::array();
  for (LayerType lt : t.layer_types) types.push_back(std::string(layer_type_name(lt)));
  j["layer_types"] = types;
  j["final_logit_softcapping"] = t.final_logit_softcapping ? json(*t.final_logit_softcapping) : json();
  j["use_bidirectional_attention"] = t.use_bidirectional_attention ? json(*t.use_bidirectional_attention) : json();
  j["vocab_size_per_layer_input"] = t.vocab_size_per_layer_input;
  j["hidden_size_per_layer_input"] = t.hidden_size_per_layer_input;
  j["attention_k_eq_v"] = t.attention_k_eq_v;
  j["num_kv_shared_layers"] = t.num_kv_shared_layers;
  j["enable_moe_block"] = t.enable_moe_block;
  j["use_double_wide_mlp"] = t.use_double_wide_mlp;
  j["num_experts"] = optional_json(t.num_experts);
  j["top_k_experts"] = optional_json(t.top_k_experts);
  j["moe_intermediate_size"] = optional_json(t.moe_intermediate_size);

  FlatGlobal flat = flat_global(t);
  if (flat.expressible) {
    j["global_head_dim"] = flat.head_dim;
    j["num_global_key_value_heads"] = optional_json(flat.kv_heads);
  }
  // transformers >= 5.15 reads only per_layer_config: an entry for every full layer (as its own
  // __post_init__ writes them) and for any sliding layer that differs from the base geometry.
  json per_layer = json::object();
  for (const LayerSpec& s : t.layers) {
    json o = json::object();
    if (s.type == LayerType::kFull || s.head_dim != t.head_dim) o["head_dim"] = s.head_dim;
    if (s.kv_heads != t.num_key_value_heads) o["num_key_value_heads"] = s.kv_heads;
    if (!o.empty()) per_layer[std::to_string(s.index)] = o;
  }
  j["per_layer_config"] = per_layer;
  return j;
}

json layer_spec_json(const LayerSpec& s) {
  return {{"index", s.index}, {"type", layer_type_name(s.type)}, {"head_dim", s.head_dim},
          {"kv_heads", s.kv_heads}, {"k_eq_v", s.k_eq_v}, {"kv_shared", s.kv_shared},
          {"kv_source", s.kv_source >= 0 ? json(s.kv_source) : json()}, {"stores_kv", s.stores_kv},
          {"mlp_width", s.mlp_width}, {"ple", s.has_ple}, {"moe", s.has_moe}};
}

json to_hf_json(const ModelConfig& c) {
  json text = text_config_to_json(c.text);
  if (c.form == ModelForm::kCausal) {
    text["architectures"] = json::array({"Gemma4ForCausalLM"});
    if (!c.dtype.empty()) text["dtype"] = c.dtype;
    return text;
  }
  json j = {
      {"boi_token_id", 255999},   {"eoi_token_id", 258882},    {"image_token_id", 258880}, {"video_token_id", 258884},
      {"boa_token_id", 256000},   {"eoa_token_index", 258883}, {"audio_token_id", 258881}, {"initializer_range", 0.02},
      {"tie_word_embeddings", c.text.tie_word_embeddings},
  };
  for (const auto& [key, value] : c.wrapper_fields.items()) j[key] = value;
  j["architectures"] = json::array({"Gemma4ForConditionalGeneration"});
  j["model_type"] = "gemma4";
  j["text_config"] = text;
  j["vision_config"] = c.vision_config;
  j["audio_config"] = c.audio_config;
  if (!c.dtype.empty()) j["dtype"] = c.dtype;
  return j;
}

}  // namespace g4::gemma4
