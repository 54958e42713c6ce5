#include "gemma4/config.h"

#include "gemma4/config_reader.h"
#include "runtime/json_parse.h"
#include "runtime/text_file.h"

namespace g4::gemma4 {
using json = nlohmann::json;

std::string_view layer_type_name(LayerType t) { return t == LayerType::kFull ? "full_attention" : "sliding_attention"; }
std::string_view form_name(ModelForm f) { return f == ModelForm::kConditional ? "conditional" : "causal"; }

json RopeParameters::to_json() const {
  json j = {{"rope_type", rope_type}, {"rope_theta", rope_theta}};
  if (partial_rotary_factor) j["partial_rotary_factor"] = *partial_rotary_factor;
  if (factor) j["factor"] = *factor;
  return j;
}

namespace {

constexpr const char* kCausalArch = "Gemma4ForCausalLM";
constexpr const char* kConditionalArch = "Gemma4ForConditionalGeneration";

Result<RopeParameters> parse_rope(const json& j, const std::string& file, const std::string& path) {
  if (!j.is_object()) return Status::invalid_argument(file + ": " + path + ": expected an object");
  ConfigReader r(j, file, path + ".");
  RopeParameters p;
  G4_ASSIGN_OR_RETURN(auto type, r.optional_string("rope_type"));
  if (!type) return r.error("rope_type", "missing");
  p.rope_type = *type;
  if (p.rope_type != "default" && p.rope_type != "proportional")
    return Status::not_supported(r.where("rope_type") + ": '" + p.rope_type + "' is not a Gemma 4 RoPE type (default, proportional)");
  G4_ASSIGN_OR_RETURN(p.rope_theta, r.number("rope_theta", p.rope_type == "default" ? 10000.0 : 1000000.0));
  G4_ASSIGN_OR_RETURN(p.partial_rotary_factor, r.optional_number("partial_rotary_factor"));
  G4_ASSIGN_OR_RETURN(p.factor, r.optional_number("factor"));
  if (p.rope_theta <= 0) return r.error("rope_theta", "must be positive");
  if (p.partial_rotary_factor && (*p.partial_rotary_factor <= 0 || *p.partial_rotary_factor > 1))
    return r.error("partial_rotary_factor", "must be in (0, 1]");
  if (p.factor && *p.factor <= 0) return r.error("factor", "must be positive");
  return p;
}

Result<std::vector<LayerType>> parse_layer_types(const ConfigReader& r, int64_t num_layers) {
  std::vector<LayerType> types;
  if (r.has("layer_types")) {
    const json& lt = r.raw("layer_types");
    if (!lt.is_array()) return r.error("layer_types", "expected a list");
    for (size_t i = 0; i < lt.size(); ++i) {
      const json& t = lt[i];
      std::string s = t.is_string() ? t.get<std::string>() : t.dump();
      if (s == "sliding_attention") types.push_back(LayerType::kSliding);
      else if (s == "full_attention") types.push_back(LayerType::kFull);
      else return r.error("layer_types[" + std::to_string(i) + "]", "'" + s + "' is not sliding_attention or full_attention");
    }
    return types;
  }
  // Absent: transformers' default 5:1 pattern, or the pattern a Gemma-3-style config names (P5).
  // Bound the depth first: the pattern is materialised per layer (fuzz_config found the OOM).
  if (num_layers < 1 || num_layers > kMaxLayers)
    return r.error("num_hidden_layers", std::to_string(num_layers) + " is not in [1, " + std::to_string(kMaxLayers) + "]");
  G4_ASSIGN_OR_RETURN(int64_t pattern, r.integer("sliding_window_pattern", 6));
  if (pattern < 1) return r.error("sliding_window_pattern", "must be at least 1");
  for (int64_t i = 0; i < num_layers; ++i) types.push_back((i + 1) % pattern ? LayerType::kSliding : LayerType::kFull);
  if (!types.empty()) types.back() = LayerType::kFull;  // what transformers forces for a derived pattern
  return types;
}

// Reads the `two` names a field has across dialects; both present and different is a contradiction.
Result<std::optional<int64_t>> dialect_integer(const ConfigReader& r, const char* name, const char* alias) {
  G4_ASSIGN_OR_RETURN(auto a, r.optional_integer(name));
  G4_ASSIGN_OR_RETURN(auto b, r.optional_integer(alias));
  if (a && b && *a != *b)
    return r.error(name, std::to_string(*a) + " contradicts " + alias + "=" + std::to_string(*b));
  return a ? a : b;
}

Status parse_text(const json& j, const std::string& file, const std::string& prefix, TextConfig& t) {
  if (!j.is_object()) return Status::invalid_argument(file + ": " + (prefix.empty() ? "config" : prefix) + " is not an object");
  ConfigReader r(j, file, prefix);
  G4_ASSIGN_OR_RETURN(t.vocab_size, r.integer("vocab_size", t.vocab_size));
  G4_ASSIGN_OR_RETURN(t.hidden_size, r.integer("hidden_size", t.hidden_size));
  G4_ASSIGN_OR_RETURN(t.intermediate_size, r.integer("intermediate_size", t.intermediate_size));
  G4_ASSIGN_OR_RETURN(t.num_hidden_layers, r.integer("num_hidden_layers", t.num_hidden_layers));
  G4_ASSIGN_OR_RETURN(t.num_attention_heads, r.integer("num_attention_heads", t.num_attention_heads));
  G4_ASSIGN_OR_RETURN(t.num_key_value_heads, r.integer("num_key_value_heads", t.num_key_value_heads));
  G4_ASSIGN_OR_RETURN(t.head_dim, r.integer("head_dim", t.head_dim));
  G4_ASSIGN_OR_RETURN(auto global_head_dim, r.optional_integer("global_head_dim"));
  G4_ASSIGN_OR_RETURN(auto swa_head_dim, r.optional_integer("swa_head_dim"));
  if (swa_head_dim) {
    // sglang-style dialect (P5): head_dim is the full-attention width, swa_head_dim the sliding one.
    if (global_head_dim && *global_head_dim != t.head_dim)
      return r.error("global_head_dim", std::to_string(*global_head_dim) + " contradicts head_dim=" +
                                            std::to_string(t.head_dim) + " of a config that uses swa_head_dim");
    global_head_dim = t.head_dim;
    t.head_dim = *swa_head_dim;
  }
  // transformers: a falsy global_head_dim means full layers use head_dim.
  t.global_head_dim = global_head_dim.value_or(512) > 0 ? global_head_dim.value_or(512) : t.head_dim;
  t.global_head_dim_given = global_head_dim.has_value();
  G4_ASSIGN_OR_RETURN(t.num_global_key_value_heads, r.optional_integer("num_global_key_value_heads"));
  G4_ASSIGN_OR_RETURN(auto act, r.optional_string("hidden_activation"));
  if (act) t.hidden_activation = *act;
  G4_ASSIGN_OR_RETURN(t.max_position_embeddings, r.integer("max_position_embeddings", t.max_position_embeddings));
  G4_ASSIGN_OR_RETURN(t.initializer_range, r.number("initializer_range", t.initializer_range));
  G4_ASSIGN_OR_RETURN(t.rms_norm_eps, r.number("rms_norm_eps", t.rms_norm_eps));
  G4_ASSIGN_OR_RETURN(t.use_cache, r.boolean("use_cache", t.use_cache));
  for (auto [key, field] : {std::pair{"pad_token_id", &t.pad_token_id}, {"eos_token_id", &t.eos_token_id}, {"bos_token_id", &t.bos_token_id}})
    if (j.contains(key)) *field = j.at(key);
  G4_ASSIGN_OR_RETURN(t.tie_word_embeddings, r.boolean("tie_word_embeddings", t.tie_word_embeddings));
  G4_ASSIGN_OR_RETURN(t.attention_bias, r.boolean("attention_bias", t.attention_bias));
  G4_ASSIGN_OR_RETURN(t.attention_dropout, r.number("attention_dropout", t.attention_dropout));
  G4_ASSIGN_OR_RETURN(t.sliding_window, r.integer("sliding_window", t.sliding_window));
  G4_ASSIGN_OR_RETURN(t.layer_types, parse_layer_types(r, t.num_hidden_layers));
  G4_ASSIGN_OR_RETURN(t.final_logit_softcapping, r.optional_number("final_logit_softcapping"));
  G4_ASSIGN_OR_RETURN(t.use_bidirectional_attention, r.optional_string("use_bidirectional_attention"));
  if (t.use_bidirectional_attention && *t.use_bidirectional_attention != "vision" && *t.use_bidirectional_attention != "all")
    return r.error("use_bidirectional_attention", "'" + *t.use_bidirectional_attention + "' is not null, \"vision\" or \"all\"");
  G4_ASSIGN_OR_RETURN(t.vocab_size_per_layer_input, r.integer("vocab_size_per_layer_input", t.vocab_size_per_layer_input));
  // transformers tests `if hidden_size_per_layer_input:`, so null and 0 both disable PLE.
  if (j.contains("hidden_size_per_layer_input") && j.at("hidden_size_per_layer_input").is_null()) {
    t.hidden_size_per_layer_input = 0;
  } else {
    G4_ASSIGN_OR_RETURN(t.hidden_size_per_layer_input, r.integer("hidden_size_per_layer_input", t.hidden_size_per_layer_input));
  }
  G4_ASSIGN_OR_RETURN(t.attention_k_eq_v, r.boolean("attention_k_eq_v", t.attention_k_eq_v));
  G4_ASSIGN_OR_RETURN(t.num_kv_shared_layers, r.integer("num_kv_shared_layers", 0));
  G4_ASSIGN_OR_RETURN(t.enable_moe_block, r.boolean("enable_moe_block", t.enable_moe_block));
  G4_ASSIGN_OR_RETURN(t.use_double_wide_mlp, r.boolean("use_double_wide_mlp", t.use_double_wide_mlp));
  G4_ASSIGN_OR_RETURN(t.num_experts, r.optional_integer("num_experts"));
  G4_ASSIGN_OR_RETURN(t.top_k_experts, dialect_integer(r, "top_k_experts", "num_experts_per_tok"));
  G4_ASSIGN_OR_RETURN(t.moe_intermediate_size, dialect_integer(r, "moe_intermediate_size", "expert_intermediate_size"));

  if (r.has("rope_parameters")) {
    const json& rp = r.raw("rope_parameters");
    if (!rp.is_object()) return r.error("rope_parameters", "expected an object keyed by layer type");
    for (const auto& [key, value] : rp.items())
      if (key != "sliding_attention" && key != "full_attention")
        return r.error("rope_parameters." + key, "unknown layer type (expected sliding_attention, full_attention)");
    if (rp.contains("sliding_attention")) {
      G4_ASSIGN_OR_RETURN(t.rope_sliding, parse_rope(rp["sliding_attention"], file, prefix + "rope_parameters.sliding_attention"));
    }
    if (rp.contains("full_attention")) {
      G4_ASSIGN_OR_RETURN(t.rope_full, parse_rope(rp["full_attention"], file, prefix + "rope_parameters.full_attention"));
    }
  } else if (r.has("rope_theta") || r.has("rope_local_base_freq")) {
    // Gemma-3-style flat RoPE fields: rope_theta for full layers, rope_local_base_freq for sliding ones.
    G4_ASSIGN_OR_RETURN(t.rope_full.rope_theta, r.number("rope_theta", t.rope_full.rope_theta));
    G4_ASSIGN_OR_RETURN(t.rope_sliding.rope_theta, r.number("rope_local_base_freq", t.rope_sliding.rope_theta));
  }
  const json per_layer = j.contains("per_layer_config") ? j.at("per_layer_config") : json();
  Status s = derive_schedule(t, per_layer);
  if (!s.ok()) return s.with_context(file);
  return {};
}

}  // namespace

Result<ModelConfig> parse_config_json(const json& j, std::string_view file_view) {
  const std::string file(file_view);
  if (!j.is_object()) return Status::invalid_argument(file + ": config is not a JSON object");
  ModelConfig c;
  ConfigReader top(j, file, "");
  G4_ASSIGN_OR_RETURN(auto model_type, top.optional_string("model_type"));
  const bool has_text_config = j.contains("text_config");
  if (model_type && *model_type != "gemma4" && *model_type != "gemma4_text")
    return Status::not_supported(file + ": model_type '" + *model_type + "' is not Gemma 4 (gemma4 or gemma4_text)");
  if (model_type == "gemma4_text" && has_text_config)
    return top.error("text_config", "present in a model_type gemma4_text config (that type is flat)");
  c.form = (model_type == "gemma4" || (!model_type && has_text_config)) ? ModelForm::kConditional : ModelForm::kCausal;

  if (j.contains("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array()) return top.error("architectures", "expected a list");
    for (const json& name : a) {
      std::string s = name.is_string() ? name.get<std::string>() : name.dump();
      bool causal = s == kCausalArch, conditional = s == kConditionalArch;
      if (!causal && !conditional)
        return Status::not_supported(top.where("architectures") + ": '" + s + "' is not " + kCausalArch + " or " + kConditionalArch);
      if (causal != (c.form == ModelForm::kCausal))
        return top.error("architectures", "'" + s + "' contradicts model_type '" + model_type.value_or("(absent)") + "'");
    }
  }
  G4_ASSIGN_OR_RETURN(auto dtype, top.optional_string("dtype"));
  if (!dtype) {
    G4_ASSIGN_OR_RETURN(dtype, top.optional_string("torch_dtype"));
  }
  c.dtype = dtype.value_or("");

  if (c.form == ModelForm::kCausal) {
    G4_RETURN_IF_ERROR(parse_text(j, file, "", c.text));
    return c;
  }
  const json text = has_text_config && !j.at("text_config").is_null() ? j.at("text_config") : json::object();
  G4_RETURN_IF_ERROR(parse_text(text, file, "text_config.", c.text));
  c.vision_config = j.contains("vision_config") ? j.at("vision_config") : json();
  c.audio_config = j.contains("audio_config") ? j.at("audio_config") : json();
  if (!c.vision_config.is_null() && !c.vision_config.is_object()) return top.error("vision_config", "expected an object or null");
  if (!c.audio_config.is_null() && !c.audio_config.is_object()) return top.error("audio_config", "expected an object or null");
  for (const auto& [key, value] : j.items())
    if (key != "text_config" && key != "vision_config" && key != "audio_config" && key != "architectures" &&
        key != "model_type" && key != "dtype" && key != "torch_dtype" && key != "transformers_version")
      c.wrapper_fields[key] = value;
  return c;
}

Result<ModelConfig> parse_config(std::string_view json_text, std::string_view file) {
  G4_ASSIGN_OR_RETURN(const json j, parse_json(json_text, file));
  return parse_config_json(j, file);
}

Result<ModelConfig> load_config(const std::string& path) {
  G4_ASSIGN_OR_RETURN(std::string text, read_text_file(path, 64u << 20));
  return parse_config(text, path);
}

}  // namespace g4::gemma4
