#include "convert/provider_config.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <regex>

#include "gemma4/config.h"
#include "gemma4/config_reader.h"

namespace g4::convert {
namespace {

using nlohmann::json;
using gemma4::ConfigReader;

// Transformers' Gemma4TextConfig defaults, used (and reported) for the fields a text provider does not carry.
const json kTextTokenDefaults = {{"pad_token_id", 0}, {"eos_token_id", 1}, {"bos_token_id", 2}};

// Top-level fields of Gemma4Config that neither VL provider records (MB's own export loses them too; its
// conform_config_to_reference takes them from a reference config). Written as transformers' defaults.
constexpr const char* kWrapperOnlyFields[] = {"boi_token_id", "eoi_token_id", "boa_token_id", "eoa_token_index"};

struct ProviderClass {
  const char* name;
  bool moe;
  bool vl;
};
constexpr ProviderClass kProviders[] = {
    {"Gemma4DenseProvider", false, false},
    {"Gemma4ModelProvider", true, false},
    {"Gemma4DenseVLProvider", false, true},
    {"Gemma4VLModelProvider", true, true},
};

const ProviderClass* provider_class(const std::string& target) {
  const std::string cls = target.substr(target.rfind('.') == std::string::npos ? 0 : target.rfind('.') + 1);
  for (const ProviderClass& p : kProviders)
    if (cls == p.name) return &p;
  return nullptr;
}

// The leading dimension of a stacked per-layer key, or the number of per-layer keys, of `decoder.layers.<name>`.
struct ShapeProbe {
  const dcp::Metadata& tensors;
  std::string prefix;  // "" or "language_model."

  // The stored shape of `<prefix><name>`, if present.
  std::optional<Shape> of(const std::string& name) const {
    auto it = tensors.tensors.find(prefix + name);
    if (it == tensors.tensors.end()) return std::nullopt;
    return it->second.shape;
  }
  // The shape of one layer's `decoder.layers.<name>`: the stacked tensor without its layer axis (`stack_axes`
  // leading axes), or layer 0's per-layer tensor.
  std::optional<Shape> layer(const std::string& name, size_t stack_axes = 1) const {
    if (auto s = of("decoder.layers." + name); s && s->size() >= stack_axes) return Shape(s->begin() + static_cast<ptrdiff_t>(stack_axes), s->end());
    return of("decoder.layers.0." + name);
  }
  // Layers: the stacked axis of a tensor every layer has, else 1 + the highest per-layer index.
  std::optional<int64_t> num_layers() const {
    for (const char* name : {"decoder.layers.pre_mlp_layernorm.weight", "decoder.layers.layer_scalar", "decoder.layers.mlp.linear_fc2.weight"})
      if (auto s = of(name); s && !s->empty()) return (*s)[0];
    int64_t highest = -1;
    const std::string head = prefix + "decoder.layers.";
    for (auto it = tensors.tensors.lower_bound(head); it != tensors.tensors.end() && it->first.starts_with(head); ++it) {
      const std::string rest = it->first.substr(head.size());
      size_t digits = 0;
      while (digits < rest.size() && digits < 7 && std::isdigit(static_cast<unsigned char>(rest[digits]))) ++digits;
      if (digits > 0 && digits < rest.size() && rest[digits] == '.') highest = std::max<int64_t>(highest, std::stoll(rest.substr(0, digits)));
    }
    return highest >= 0 ? std::optional<int64_t>(highest + 1) : std::nullopt;
  }
};

// The config dict of a serialised HF config node: `{_target_: ...Config.from_dict, _call_: true, config_dict: {...}}`
// (megatron-core's PretrainedConfig representer; what g4convert writes) or `{_target_: ...Config, field: ...}`
// (MB 0.6.2's ConfigContainer, a PreTrainedConfig as its fields). Null stays null.
Result<json> hf_config_node(const json& model, const char* key, const std::string& file) {
  if (!model.contains(key) || model.at(key).is_null()) return json();
  const json& node = model.at(key);
  if (!node.is_object()) return Status::invalid_argument(file + ": model." + key + ": expected a mapping (an HF config) or null");
  if (node.contains("config_dict")) {
    if (!node.at("config_dict").is_object()) return Status::invalid_argument(file + ": model." + key + ".config_dict: expected a mapping");
    return node.at("config_dict");
  }
  json out = json::object();
  for (const auto& [k, v] : node.items())
    if (k != "_target_" && k != "_call_") out[k] = v;
  return out;
}

// megatron_to_hf_activation: the activation node's function, back to the HF name.
Result<std::string> hf_activation(const ConfigReader& r, const json& model) {
  if (!r.has("activation_func")) return std::string("gelu_pytorch_tanh");  // both providers' default (fast_gelu)
  const json& a = model.at("activation_func");
  const std::string target = a.is_object() && a.contains("_target_") && a.at("_target_").is_string() ? a.at("_target_").get<std::string>() : "";
  if (target.ends_with(".fast_gelu")) return std::string("gelu_pytorch_tanh");
  return Status::not_supported(r.where("activation_func") + ": '" + (target.empty() ? a.dump() : target) +
                               "' is not Gemma 4's activation (megatron.core.activations.fast_gelu)");
}

// The HF dtype name the way megatron_to_hf_config picks it: bf16, then fp16, else float32.
Result<std::string> hf_dtype(const ConfigReader& r) {
  G4_ASSIGN_OR_RETURN(bool bf16, r.boolean("bf16", true));
  G4_ASSIGN_OR_RETURN(bool fp16, r.boolean("fp16", false));
  return std::string(bf16 ? "bfloat16" : fp16 ? "float16" : "float32");
}

// mcore_to_hf_window_size: an MCore (left, right) window is left + 1 HF tokens; a scalar is already HF's.
Result<int64_t> hf_sliding_window(const ConfigReader& r, const json& model, int64_t fallback) {
  if (!r.has("window_size")) return fallback;
  const json& w = model.at("window_size");
  if (w.is_array()) {
    if (w.size() != 2 || !w[0].is_number_integer()) return r.error("window_size", "expected an MCore (left, right) window, got " + w.dump());
    return w[0].get<int64_t>() + 1;
  }
  return r.integer("window_size", fallback);
}

// _layer_types_from_provider: a (n_sliding, n_full) cycle, a literal list (layer type names, or booleans with
// true = sliding), or an int n (every n-th layer full); the last layer forced full, as MB does.
Result<json> hf_layer_types(const ConfigReader& r, const json& model, const char* key, int64_t layers, bool pairs_allowed, int64_t default_every) {
  if (layers < 1 || layers > gemma4::kMaxLayers) return r.error("num_layers", std::to_string(layers) + " is out of range");
  std::vector<bool> sliding;
  const json pattern = r.has(key) ? model.at(key) : json(default_every);
  auto is_int = [](const json& v) { return v.is_number_integer() || v.is_number_unsigned(); };
  if (pattern.is_array() && pairs_allowed && pattern.size() == 2 && is_int(pattern[0]) && is_int(pattern[1])) {
    const int64_t s = pattern[0].get<int64_t>(), f = pattern[1].get<int64_t>();
    if (s < 0 || f < 0 || s + f == 0) return r.error(key, "a (sliding, full) cycle needs a positive length, got " + pattern.dump());
    for (int64_t l = 0; l < layers; ++l) sliding.push_back(l % (s + f) < s);
  } else if (pattern.is_array()) {
    if (static_cast<int64_t>(pattern.size()) != layers)
      return r.error(key, "has " + std::to_string(pattern.size()) + " entries for " + std::to_string(layers) + " layers");
    for (size_t l = 0; l < pattern.size(); ++l) {
      const json& v = pattern[l];
      if (v.is_boolean()) sliding.push_back(v.get<bool>());
      else if (v == "sliding_attention") sliding.push_back(true);
      else if (v == "full_attention") sliding.push_back(false);
      else return r.error(std::string(key) + "[" + std::to_string(l) + "]", "expected a boolean or a layer type, got " + v.dump());
    }
  } else if (is_int(pattern) && pattern.get<int64_t>() > 0) {
    for (int64_t l = 1; l <= layers; ++l) sliding.push_back(l % pattern.get<int64_t>() != 0);
  } else {
    return r.error(key, "expected a list or a positive integer, got " + pattern.dump());
  }
  sliding.back() = false;
  json types = json::array();
  for (bool s : sliding) types.push_back(s ? "sliding_attention" : "full_attention");
  return types;
}

}  // namespace

bool is_gemma4_provider_class(const std::string& class_name) { return provider_class(class_name) != nullptr; }

Result<RecoveredConfig> hf_config_from_run_config(const json& run_config, const std::string& file, const dcp::Metadata& tensors) {
  if (!run_config.is_object() || !run_config.contains("model") || !run_config.at("model").is_object())
    return Status::invalid_argument(file + ": no model section (a mapping) to build the HF config from");
  const json& m = run_config.at("model");
  ConfigReader r(m, file, "model.");
  G4_ASSIGN_OR_RETURN(auto target, r.optional_string("_target_"));
  if (!target) return r.error("_target_", "missing: the model section names no provider");
  const ProviderClass* cls = provider_class(*target);
  if (!cls)
    return Status::not_supported(r.where("_target_") + ": '" + *target +
                                 "' is not a Gemma 4 provider (Gemma4DenseProvider, Gemma4ModelProvider, "
                                 "Gemma4DenseVLProvider, Gemma4VLModelProvider)");
  RecoveredConfig out;
  const ShapeProbe shapes{tensors, cls->vl ? "language_model." : ""};

  // An integer provider field; when the file leaves it out, from the tensor shapes (reported), else the
  // provider class's default (what MB's instantiate would use).
  auto field = [&](const char* key, std::optional<int64_t> from_shape, int64_t class_default) -> Result<int64_t> {
    if (r.has(key)) return r.integer(key, class_default);
    if (from_shape) {
      out.from_shapes.push_back(key);
      return *from_shape;
    }
    return class_default;
  };
  auto dim = [](const std::optional<Shape>& s, size_t d, int64_t divisor = 1) -> std::optional<int64_t> {
    if (!s || s->size() <= d || divisor <= 0) return std::nullopt;
    return (*s)[d] / divisor;
  };
  const std::optional<Shape> embedding = shapes.of("embedding.word_embeddings.weight");

  json t = json::object();
  G4_ASSIGN_OR_RETURN(const int64_t layers, field("num_layers", shapes.num_layers(), cls->moe ? 30 : 42));
  G4_ASSIGN_OR_RETURN(const int64_t hidden, field("hidden_size", dim(embedding, 1), cls->moe ? 2816 : 2560));
  t["num_hidden_layers"] = layers;
  t["hidden_size"] = hidden;
  G4_ASSIGN_OR_RETURN(t["num_attention_heads"], field("num_attention_heads", std::nullopt, 8));
  G4_ASSIGN_OR_RETURN(t["num_key_value_heads"], field("num_query_groups", std::nullopt, cls->moe ? 8 : 2));
  G4_ASSIGN_OR_RETURN(t["head_dim"], field("kv_channels", dim(shapes.layer("self_attention_sliding.q_layernorm.weight"), 0), 256));
  G4_ASSIGN_OR_RETURN(t["vocab_size"], field("vocab_size", dim(embedding, 0), cls->moe ? 262144 : 262143));
  G4_ASSIGN_OR_RETURN(t["max_position_embeddings"], field("seq_length", std::nullopt, cls->moe ? 262144 : 131072));
  G4_ASSIGN_OR_RETURN(t["rms_norm_eps"], r.number("layernorm_epsilon", 1e-6));
  G4_ASSIGN_OR_RETURN(t["initializer_range"], r.number("init_method_std", 0.02));
  G4_ASSIGN_OR_RETURN(t["attention_dropout"], r.number("attention_dropout", 0.0));
  G4_ASSIGN_OR_RETURN(t["tie_word_embeddings"], r.boolean("share_embeddings_and_output_weights", true));
  G4_ASSIGN_OR_RETURN(t["attention_bias"], r.boolean("add_qkv_bias", false));
  G4_ASSIGN_OR_RETURN(t["hidden_activation"], hf_activation(r, m));
  G4_ASSIGN_OR_RETURN(t["attention_k_eq_v"], r.boolean("attention_k_eq_v", false));
  if (r.has("final_logit_softcapping")) {
    G4_ASSIGN_OR_RETURN(t["final_logit_softcapping"], r.number("final_logit_softcapping", 30.0));
  } else {
    t["final_logit_softcapping"] = m.contains("final_logit_softcapping") ? json() : json(30.0);  // stated null stays null
  }
  t["enable_moe_block"] = cls->moe;
  t["model_type"] = "gemma4_text";

  double local_theta = 10000.0, global_theta = 1000000.0, partial = 0.25;
  if (cls->moe) {
    G4_ASSIGN_OR_RETURN(t["sliding_window"], hf_sliding_window(r, m, 1024));
    G4_ASSIGN_OR_RETURN(t["layer_types"], hf_layer_types(r, m, "interleaved_attn_pattern", layers, /*pairs_allowed=*/true, 6));
    G4_ASSIGN_OR_RETURN(t["global_head_dim"], field("global_head_dim", dim(shapes.layer("self_attention_global.q_layernorm.weight"), 0), 512));
    if (m.contains("num_global_key_value_heads") && m.at("num_global_key_value_heads").is_null()) {
      t["num_global_key_value_heads"] = nullptr;  // MB: None, i.e. the sliding layers' count
    } else {
      G4_ASSIGN_OR_RETURN(t["num_global_key_value_heads"], r.integer("num_global_key_value_heads", 2));
    }
    if (r.has("rotary_base") && m.at("rotary_base").is_array()) {
      const json& b = m.at("rotary_base");
      if (b.size() != 2 || !b[0].is_number() || !b[1].is_number()) return r.error("rotary_base", "expected (local, global), got " + b.dump());
      local_theta = b[0].get<double>(), global_theta = b[1].get<double>();
    } else if (r.has("rotary_base")) {
      G4_ASSIGN_OR_RETURN(local_theta, r.number("rotary_base", 10000.0));
      global_theta = local_theta;
    }
    G4_ASSIGN_OR_RETURN(partial, r.number("global_rotary_percent", 0.25));
    const std::optional<Shape> fc1 = shapes.layer("mlp.experts.experts.linear_fc1.weight");  // [E, 2I, H] per layer
    G4_ASSIGN_OR_RETURN(t["num_experts"], field("num_moe_experts", dim(fc1, 0), 128));
    G4_ASSIGN_OR_RETURN(t["top_k_experts"], field("moe_router_topk", std::nullopt, 8));
    G4_ASSIGN_OR_RETURN(t["moe_intermediate_size"], field("moe_ffn_hidden_size", dim(fc1, 1, 2), 704));
    G4_ASSIGN_OR_RETURN(t["intermediate_size"],
                        field("moe_shared_expert_intermediate_size", dim(shapes.layer("mlp.shared_experts.linear_fc1.weight"), 0, 2), 2112));
    t["hidden_size_per_layer_input"] = 0;  // vocab_size_per_layer_input: below, from the text_config node if any
    t["num_kv_shared_layers"] = 0;
    t["use_double_wide_mlp"] = false;
  } else {
    G4_ASSIGN_OR_RETURN(t["sliding_window"], hf_sliding_window(r, m, 512));
    G4_ASSIGN_OR_RETURN(t["layer_types"], hf_layer_types(r, m, "window_attn_skip_freq", layers, /*pairs_allowed=*/false, 6));
    G4_ASSIGN_OR_RETURN(t["global_head_dim"], field("global_kv_channels", dim(shapes.layer("self_attention_global.q_layernorm.weight"), 0), 512));
    if (m.contains("num_global_query_groups") && m.at("num_global_query_groups").is_null()) {
      t["num_global_key_value_heads"] = nullptr;  // MB: None, i.e. the sliding layers' count
    } else {
      G4_ASSIGN_OR_RETURN(t["num_global_key_value_heads"], r.integer("num_global_query_groups", 2));
    }
    G4_ASSIGN_OR_RETURN(local_theta, r.number("sliding_window_rope_base", 10000.0));
    G4_ASSIGN_OR_RETURN(global_theta, r.number("full_attention_rope_base", 1000000.0));
    G4_ASSIGN_OR_RETURN(partial, r.number("full_attention_rope_partial_factor", 0.25));
    G4_ASSIGN_OR_RETURN(t["intermediate_size"], field("ffn_hidden_size", dim(shapes.layer("mlp.linear_fc1.weight"), 0, 2), 10240));
    G4_ASSIGN_OR_RETURN(t["num_kv_shared_layers"], field("num_kv_shared_layers", std::nullopt, 18));
    G4_ASSIGN_OR_RETURN(t["use_double_wide_mlp"], r.boolean("use_double_wide_mlp", false));
    const std::optional<Shape> ple = shapes.of("per_layer_embedding.weight");  // [Vple, L * ple]
    G4_ASSIGN_OR_RETURN(t["vocab_size_per_layer_input"], field("per_layer_embed_vocab_size", dim(ple, 0), 262144));
    G4_ASSIGN_OR_RETURN(t["hidden_size_per_layer_input"], field("per_layer_embed_dim", ple ? dim(ple, 1, layers) : std::optional<int64_t>(0), 256));
    t["num_experts"] = nullptr;
    t["top_k_experts"] = nullptr;
    t["moe_intermediate_size"] = nullptr;
  }
  t["rope_parameters"] = {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", local_theta}}},
                          {"full_attention", {{"rope_type", "proportional"}, {"rope_theta", global_theta}, {"partial_rotary_factor", partial}}}};
  G4_ASSIGN_OR_RETURN(const std::string dtype, hf_dtype(r));

  // Fields of the text config that no provider field holds: the VL providers' text_config node has them.
  G4_ASSIGN_OR_RETURN(const json text_node, hf_config_node(m, "text_config", file));
  for (const char* key : {"pad_token_id", "eos_token_id", "bos_token_id", "use_bidirectional_attention"}) {
    if (text_node.is_object() && text_node.contains(key)) {
      t[key] = text_node.at(key);
      continue;
    }
    t[key] = kTextTokenDefaults.contains(key) ? kTextTokenDefaults.at(key) : json();
    out.unrecoverable.push_back(cls->vl ? std::string("text_config.") + key : std::string(key));
  }
  if (text_node.is_object() && text_node.contains("use_cache")) t["use_cache"] = text_node.at("use_cache");
  // The MoE providers have no per-layer embedding, so no field for its vocabulary (inert without one); a VL
  // provider's text_config node may state it, else transformers' default is written.
  if (!t.contains("vocab_size_per_layer_input")) {
    if (text_node.is_object() && text_node.contains("vocab_size_per_layer_input")) {
      t["vocab_size_per_layer_input"] = text_node.at("vocab_size_per_layer_input");
    } else {
      t["vocab_size_per_layer_input"] = 262144;
      out.unrecoverable.push_back(cls->vl ? "text_config.vocab_size_per_layer_input" : "vocab_size_per_layer_input");
    }
  }

  if (!cls->vl) {
    t["architectures"] = json::array({"Gemma4ForCausalLM"});
    t["dtype"] = dtype;
    out.hf = std::move(t);
    return out;
  }
  json hf = json::object();
  hf["architectures"] = json::array({"Gemma4ForConditionalGeneration"});
  hf["model_type"] = "gemma4";
  hf["text_config"] = t;
  G4_ASSIGN_OR_RETURN(hf["vision_config"], hf_config_node(m, "vision_config", file));
  G4_ASSIGN_OR_RETURN(hf["audio_config"], hf_config_node(m, "audio_config", file));
  hf["tie_word_embeddings"] = t["tie_word_embeddings"];
  hf["initializer_range"] = t["initializer_range"];
  hf["dtype"] = dtype;
  struct Token {
    const char* key;
    int64_t class_default;
  };
  for (const Token& f : {Token{"image_token_id", 258880}, {"video_token_id", 258884}, {"audio_token_id", 258881}, {"vision_soft_tokens_per_image", 280}}) {
    G4_ASSIGN_OR_RETURN(hf[f.key], r.integer(f.key, f.class_default));
  }
  // Top-level bos/eos: written only where they say something the text config does not.
  for (const char* key : {"bos_token_id", "eos_token_id"})
    if (m.contains(key) && m.at(key) != t[key]) hf[key] = m.at(key);
  for (const char* key : kWrapperOnlyFields) out.unrecoverable.push_back(key);
  out.hf = std::move(hf);
  return out;
}

}  // namespace g4::convert
