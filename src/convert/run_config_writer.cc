// run_config.yaml as Megatron-Bridge 0.6.2's save_megatron_model writes it (ConfigContainer.to_yaml: PyYAML
// safe_dump, block style, sorted keys): the model section holds every dataclass field of the provider MB would
// build (the generated table mb_provider_fields.inc: class defaults as MB serialises them), overlaid with what
// its provider_bridge sets from the HF config (gemma4_bridge.py, gemma4_vl_bridge.py; a declarative table).
#include <charconv>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "convert/mcore_files.h"
#include "convert/storage_layout.h"

namespace g4::convert {
namespace {

using gemma4::LayerType;
using nlohmann::json;

struct FieldDefault {
  const char* name;
  const char* defaults[4];  // JSON text per provider (ProviderIndex); nullptr: not a field of that provider
};
enum ProviderIndex { kDenseText, kMoeText, kDenseVl, kMoeVl };
constexpr FieldDefault kProviderFields[] = {
#include "convert/mb_provider_fields.inc"
};

// What the overrides read: the config and the values derived from it once.
struct Ctx {
  const gemma4::ModelConfig& config;
  const gemma4::TextConfig& t;
  DType dtype;
  int64_t pad_vocab;  // hf2mcore --pad-vocab: the provider pads its vocabulary to a multiple of this
  int64_t global_head_dim;
  json global_kv_heads;  // null: MB's None, the sliding layers' count
};

enum Kind : unsigned { kDense = 1, kMoe = 2, kVl = 4 };
constexpr unsigned kAll = kDense | kMoe;

struct Override {
  const char* field;
  unsigned kinds;  // kDense / kMoe; with kVl only for the VL providers
  json (*value)(const Ctx&);
};

json dtype_node(DType d) {
  return {{"_target_", d == DType::kF32 ? "torch.float32" : d == DType::kF16 ? "torch.float16" : "torch.bfloat16"}, {"_call_", false}};
}

// An HF config node in megatron-core's PretrainedConfig representer form ({_target_: <Config>.from_dict,
// _call_: true, config_dict}), which MB's instantiate loads. (MB 0.6.2 itself writes the class as _target_
// followed by its fields; provider_config.cc reads both.)
json hf_config_node(const std::string& cls, const json& config) {
  return {{"_target_", "transformers.models.gemma4.configuration_gemma4." + cls + ".from_dict"}, {"_call_", true}, {"config_dict", config}};
}

// (n_sliding, n_full) when layer_types repeats that pattern exactly, else the literal list (MB 4b9561cf2).
json attention_pattern(const gemma4::TextConfig& t) {
  const auto& types = t.layer_types;
  size_t s = 0;
  while (s < types.size() && types[s] == LayerType::kSliding) ++s;
  size_t f = 0;
  while (s + f < types.size() && types[s + f] == LayerType::kFull) ++f;
  bool periodic = f > 0;
  for (size_t l = 0; l < types.size() && periodic; ++l) periodic = types[l] == (l % (s + f) < s ? LayerType::kSliding : LayerType::kFull);
  if (periodic) return json::array({s, f});
  json list = json::array();
  for (LayerType type : types) list.push_back(std::string(gemma4::layer_type_name(type)));
  return list;
}

json wrapper_id(const Ctx& c, const char* key, int64_t fallback) { return c.config.wrapper_fields.value(key, json(fallback)); }

// What Gemma4Bridge / Gemma4VLBridge.provider_bridge set from the HF config (megatron-bridge-layout.md §3).
const Override kOverrides[] = {
    {"num_layers", kAll, [](const Ctx& c) { return json(c.t.num_hidden_layers); }},
    {"hidden_size", kAll, [](const Ctx& c) { return json(c.t.hidden_size); }},
    {"ffn_hidden_size", kAll, [](const Ctx& c) { return json(c.t.intermediate_size); }},
    {"num_attention_heads", kAll, [](const Ctx& c) { return json(c.t.num_attention_heads); }},
    {"num_query_groups", kAll, [](const Ctx& c) { return json(c.t.num_key_value_heads); }},
    {"kv_channels", kAll, [](const Ctx& c) { return json(c.t.head_dim); }},
    {"vocab_size", kAll, [](const Ctx& c) { return json(c.t.vocab_size); }},
    {"seq_length", kAll, [](const Ctx& c) { return json(c.t.max_position_embeddings); }},
    {"layernorm_epsilon", kAll, [](const Ctx& c) { return json(c.t.rms_norm_eps); }},
    {"init_method_std", kAll, [](const Ctx& c) { return json(c.t.initializer_range); }},
    {"attention_dropout", kAll, [](const Ctx& c) { return json(c.t.attention_dropout); }},
    {"add_qkv_bias", kAll, [](const Ctx& c) { return json(c.t.attention_bias); }},
    {"share_embeddings_and_output_weights", kAll, [](const Ctx& c) { return json(c.t.tie_word_embeddings); }},
    {"attention_k_eq_v", kAll, [](const Ctx& c) { return json(c.t.attention_k_eq_v); }},
    {"final_logit_softcapping", kAll, [](const Ctx& c) { return c.t.final_logit_softcapping ? json(*c.t.final_logit_softcapping) : json(); }},
    {"make_vocab_size_divisible_by", kAll, [](const Ctx& c) { return json(c.pad_vocab); }},
    // The checkpoint's own dtype (MB casts to bf16 on import; g4convert copies, so it states what it stored).
    {"params_dtype", kAll, [](const Ctx& c) { return dtype_node(c.dtype); }},
    {"autocast_dtype", kAll, [](const Ctx& c) { return dtype_node(c.dtype); }},
    {"bf16", kAll, [](const Ctx& c) { return json(c.dtype == DType::kBF16); }},
    {"fp16", kAll, [](const Ctx& c) { return json(c.dtype == DType::kF16); }},
    // Dense (Gemma4Bridge._build_dense_provider).
    {"window_size", kDense, [](const Ctx& c) { return json::array({c.t.sliding_window - 1, 0}); }},
    {"window_attn_skip_freq", kDense, [](const Ctx& c) {
       json skip = json::array();
       for (LayerType type : c.t.layer_types) skip.push_back(type == LayerType::kSliding);
       return skip;
     }},
    {"global_kv_channels", kDense, [](const Ctx& c) { return json(c.global_head_dim); }},
    {"num_global_query_groups", kDense, [](const Ctx& c) { return c.global_kv_heads; }},
    {"sliding_window_rope_base", kDense, [](const Ctx& c) { return json(c.t.rope_sliding.rope_theta); }},
    {"full_attention_rope_base", kDense, [](const Ctx& c) { return json(c.t.rope_full.rope_theta); }},
    {"full_attention_rope_partial_factor", kDense, [](const Ctx& c) { return json(c.t.rope_full.partial_rotary_factor.value_or(1.0)); }},
    {"num_kv_shared_layers", kDense, [](const Ctx& c) { return json(c.t.num_kv_shared_layers); }},
    {"use_double_wide_mlp", kDense, [](const Ctx& c) { return json(c.t.use_double_wide_mlp); }},
    {"per_layer_embed_vocab_size", kDense, [](const Ctx& c) { return json(c.t.vocab_size_per_layer_input); }},
    {"per_layer_embed_dim", kDense, [](const Ctx& c) { return json(c.t.hidden_size_per_layer_input); }},
    // Gemma4DenseProvider.finalize(): use_double_wide_mlp => per-layer keys (E2B).
    {"hetereogenous_dist_checkpoint", kDense, [](const Ctx& c) { return json(layer_keys_for(c.t) == LayerKeys::kPerLayer); }},
    // MoE (Gemma4Bridge._build_moe_provider).
    {"window_size", kMoe, [](const Ctx& c) { return json(c.t.sliding_window); }},
    {"rotary_base", kMoe, [](const Ctx& c) { return json::array({c.t.rope_sliding.rope_theta, c.t.rope_full.rope_theta}); }},
    {"global_head_dim", kMoe, [](const Ctx& c) { return json(c.global_head_dim); }},
    {"num_global_key_value_heads", kMoe, [](const Ctx& c) { return c.global_kv_heads; }},
    {"global_rotary_percent", kMoe, [](const Ctx& c) { return json(c.t.rope_full.partial_rotary_factor.value_or(1.0)); }},
    {"interleaved_attn_pattern", kMoe, [](const Ctx& c) { return attention_pattern(c.t); }},
    {"num_moe_experts", kMoe, [](const Ctx& c) { return json(c.t.num_experts.value_or(0)); }},
    {"moe_router_topk", kMoe, [](const Ctx& c) { return json(c.t.top_k_experts.value_or(0)); }},
    {"moe_ffn_hidden_size", kMoe, [](const Ctx& c) { return json(c.t.moe_intermediate_size.value_or(0)); }},
    {"moe_shared_expert_intermediate_size", kMoe, [](const Ctx& c) { return json(c.t.intermediate_size); }},
    // VL providers: the HF sub-configs and the wrapper's token ids (else the released vocabulary's defaults).
    {"text_config", kAll | kVl, [](const Ctx& c) { return hf_config_node("Gemma4TextConfig", gemma4::to_hf_json(c.config).value("text_config", json::object())); }},
    {"vision_config", kAll | kVl, [](const Ctx& c) { return c.config.vision_config.is_null() ? json() : hf_config_node("Gemma4VisionConfig", c.config.vision_config); }},
    {"audio_config", kAll | kVl, [](const Ctx& c) { return c.config.audio_config.is_null() ? json() : hf_config_node("Gemma4AudioConfig", c.config.audio_config); }},
    {"vision_soft_tokens_per_image", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "vision_soft_tokens_per_image", 280); }},
    {"bos_token_id", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "bos_token_id", 2); }},
    {"eos_token_id", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "eos_token_id", 1); }},
    {"image_token_id", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "image_token_id", 258880); }},
    {"video_token_id", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "video_token_id", 258884); }},
    {"audio_token_id", kAll | kVl, [](const Ctx& c) { return wrapper_id(c, "audio_token_id", 258881); }},
};

// MB's value for num_global_{key_value_heads,query_groups}: the HF field, else (per_layer_config-only configs)
// the K=V full layers' count where it differs from the sliding one, else None.
json global_kv_heads(const gemma4::TextConfig& t) {
  if (t.num_global_key_value_heads) return *t.num_global_key_value_heads;
  for (const gemma4::LayerSpec& s : t.layers)
    if (s.k_eq_v && s.kv_heads != t.num_key_value_heads) return s.kv_heads;
  return nullptr;
}

nlohmann::json provider_fields(const gemma4::ModelConfig& config, DType params_dtype, int64_t pad_vocab) {
  const gemma4::TextConfig& t = config.text;
  int64_t global_head_dim = t.global_head_dim;  // as the schedule resolved it (per_layer_config wins)
  for (const gemma4::LayerSpec& s : t.layers)
    if (s.type == LayerType::kFull) {
      global_head_dim = s.head_dim;
      break;
    }
  const Ctx ctx{config, t, params_dtype, pad_vocab, global_head_dim, global_kv_heads(t)};
  const bool moe = t.enable_moe_block, vl = config.form == gemma4::ModelForm::kConditional;
  json m = json::object();
  const ProviderIndex provider = vl ? (moe ? kMoeVl : kDenseVl) : (moe ? kMoeText : kDenseText);
  for (const FieldDefault& f : kProviderFields)
    if (f.defaults[provider]) m[f.name] = json::parse(f.defaults[provider]);
  const unsigned kind = moe ? kMoe : kDense;
  for (const Override& o : kOverrides) {
    if (!(o.kinds & kind) || ((o.kinds & kVl) && !vl)) continue;
    m[o.field] = o.value(ctx);
  }
  const std::string base = vl ? "megatron.bridge.models.gemma_vl.gemma4_vl_provider." : "megatron.bridge.models.gemma.gemma4_provider.";
  m["_target_"] = base + (moe ? (vl ? "Gemma4VLModelProvider" : "Gemma4ModelProvider") : (vl ? "Gemma4DenseVLProvider" : "Gemma4DenseProvider"));
  return m;
}

// PyYAML (YAML 1.1) reads "1e-06" as a string: a float needs a dot, and the exponent its sign (repr + fixes).
std::string yaml_float(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find_first_of(".ne") == std::string::npos) return s + ".0";
  if (size_t e = s.find('e'); e != std::string::npos && s.find('.') == std::string::npos) s.insert(e, ".0");
  if (size_t e = s.find('e'); e != std::string::npos && s[e + 1] != '-' && s[e + 1] != '+') s.insert(e + 1, "+");
  return s;
}

// A string PyYAML would write plain: word characters and dots only, and not a word YAML 1.1 reads as
// something else (null, booleans, numbers).
bool plain_safe(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '/' && c != '-') return false;
  if (!std::isalpha(static_cast<unsigned char>(s[0])) && s[0] != '_' && s[0] != '/') return false;
  for (const char* w : {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
                        "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL"})
    if (s == w) return false;
  return true;
}

std::string yaml_scalar(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_float()) return yaml_float(v.get<double>());
  if (v.is_number()) return v.dump();
  const std::string s = v.get<std::string>();
  return plain_safe(s) ? s : v.dump();  // JSON's double-quoted form is YAML's too
}

// Block style as safe_dump(default_flow_style=False) writes it: mappings indented by 2, sequence items at the
// mapping's indentation, empty collections as [] / {}.
void emit(const json& v, int indent, std::string& out) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      const json& c = it.value();
      out += pad + yaml_scalar(json(it.key())) + ":";
      if ((c.is_object() || c.is_array()) && !c.empty()) {
        out += "\n";
        emit(c, c.is_object() ? indent + 2 : indent, out);
      } else {
        out += " " + (c.is_object() ? std::string("{}") : c.is_array() ? std::string("[]") : yaml_scalar(c)) + "\n";
      }
    }
    return;
  }
  for (const json& c : v) {
    if (c.is_object() && !c.empty()) {
      std::string inner;
      emit(c, indent + 2, inner);
      out += pad + "- " + inner.substr(static_cast<size_t>(indent) + 2);
    } else if (c.is_array() && !c.empty()) {
      out += pad + "-\n";
      emit(c, indent + 2, out);
    } else {
      out += pad + "- " + (c.is_object() ? std::string("{}") : c.is_array() ? std::string("[]") : yaml_scalar(c)) + "\n";
    }
  }
}

}  // namespace

std::string run_config_yaml(const gemma4::ModelConfig& config, DType params_dtype, int64_t pad_vocab) {
  // save_megatron_model's ConfigContainer: the model, a weights-only CheckpointConfig, and no training run
  // (train, ddp, scheduler, dataset and dist are None there too).
  json root = {
      {"_target_", "megatron.bridge.training.config.ConfigContainer"},
      {"model", provider_fields(config, params_dtype, pad_vocab)},
      {"checkpoint",
       {{"_target_", "megatron.bridge.training.config.CheckpointConfig"},
        {"async_save", false},
        {"ckpt_format", "torch_dist"},
        {"dist_ckpt_optim_fully_reshardable", true},
        {"fully_parallel_save", true},
        {"save_optim", false},
        {"save_rng", false}}},
      {"train", nullptr},
      {"ddp", nullptr},
      {"scheduler", nullptr},
      {"dataset", nullptr},
      {"dist", nullptr},
  };
  std::string out = "# Written by g4convert for Megatron-Bridge's load_megatron_model (ConfigContainer.to_yaml layout).\n";
  emit(root, 0, out);
  return out;
}

}  // namespace g4::convert
