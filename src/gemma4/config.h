// The Gemma 4 configuration as transformers defines it (configuration_gemma4.py), parsed from every
// config.json form users have: Gemma4ForCausalLM (model_type gemma4_text, flat) and
// Gemma4ForConditionalGeneration (model_type gemma4, text under text_config, vision/audio towers);
// the released flat global_head_dim / num_global_key_value_heads fields and the newer per_layer_config;
// and the dialects of pitfalls.md P5. A parsed ModelConfig always holds a validated layer schedule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace g4::gemma4 {

enum class LayerType : uint8_t { kSliding, kFull };

inline constexpr int64_t kMaxLayers = 100000;  // far above any release (60), low enough to materialise
enum class ModelForm : uint8_t { kCausal, kConditional };

std::string_view layer_type_name(LayerType t);  // "sliding_attention" / "full_attention"
std::string_view form_name(ModelForm f);         // "causal" / "conditional"

struct RopeParameters {
  std::string rope_type = "default";
  double rope_theta = 10000.0;
  std::optional<double> partial_rotary_factor;
  std::optional<double> factor;
  nlohmann::json to_json() const;
};

// One decoder layer's derived structure (gemma4-hf.md §1.2), computed from layer_types and the config alone.
struct LayerSpec {
  int index = 0;
  LayerType type = LayerType::kSliding;
  int64_t head_dim = 0;
  int64_t kv_heads = 0;
  bool k_eq_v = false;      // full layer with attention_k_eq_v: no v_proj, V comes from raw k_proj
  bool kv_shared = false;   // reuses K/V of kv_source; owns no k_proj/v_proj/k_norm
  int kv_source = -1;       // last earlier owner of the same type, for shared layers
  bool stores_kv = false;   // last owner of its type before the shared block
  int64_t mlp_width = 0;    // intermediate_size, doubled on shared layers with use_double_wide_mlp
  bool has_ple = false;
  bool has_moe = false;
};

struct TextConfig {
  int64_t vocab_size = 262144;
  int64_t hidden_size = 2304;
  int64_t intermediate_size = 9216;
  int64_t num_hidden_layers = 30;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 256;
  std::string hidden_activation = "gelu_pytorch_tanh";
  int64_t max_position_embeddings = 131072;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  bool use_cache = true;
  nlohmann::json pad_token_id = 0;
  nlohmann::json eos_token_id = 1;
  nlohmann::json bos_token_id = 2;
  bool tie_word_embeddings = true;
  RopeParameters rope_sliding{"default", 10000.0, std::nullopt, std::nullopt};
  RopeParameters rope_full{"proportional", 1000000.0, 0.25, std::nullopt};
  bool attention_bias = false;
  double attention_dropout = 0.0;
  int64_t sliding_window = 512;
  std::vector<LayerType> layer_types;
  std::optional<double> final_logit_softcapping;
  std::optional<std::string> use_bidirectional_attention;  // null, "vision" or "all"
  int64_t vocab_size_per_layer_input = 262144;
  int64_t hidden_size_per_layer_input = 256;
  bool attention_k_eq_v = false;
  int64_t num_kv_shared_layers = 0;
  bool enable_moe_block = false;
  bool use_double_wide_mlp = false;
  std::optional<int64_t> num_experts;
  std::optional<int64_t> top_k_experts;
  std::optional<int64_t> moe_intermediate_size;
  // Full-attention geometry in the released flat form; per-layer overrides are resolved into `layers`.
  int64_t global_head_dim = 512;
  bool global_head_dim_given = false;  // stated in the file, so per_layer_config must agree with it
  std::optional<int64_t> num_global_key_value_heads;

  std::vector<LayerSpec> layers;  // derived, validated

  bool has_ple() const { return hidden_size_per_layer_input > 0; }
  int first_shared_layer() const { return static_cast<int>(num_hidden_layers - num_kv_shared_layers); }
};

struct ModelConfig {
  ModelForm form = ModelForm::kCausal;
  TextConfig text;
  nlohmann::json vision_config;  // null when the tower is absent; passed through untouched
  nlohmann::json audio_config;
  nlohmann::json wrapper_fields = nlohmann::json::object();  // conditional form: token ids and other top-level fields
  std::string dtype;  // "bfloat16", "float32", ... as the config records it; may be empty

  // Prefix of the text decoder's checkpoint keys: "model." or "model.language_model.".
  std::string text_prefix() const { return form == ModelForm::kConditional ? "model.language_model." : "model."; }
};

// Parses config.json text. `file` names the file in messages.
Result<ModelConfig> parse_config(std::string_view json_text, std::string_view file);
Result<ModelConfig> parse_config_json(const nlohmann::json& j, std::string_view file);
Result<ModelConfig> load_config(const std::string& path);

// Derives and validates the layer schedule of `text` (fills text.layers). Called by parse_config;
// public for presets and tests. `per_layer` holds per_layer_config overrides, if any.
Status derive_schedule(TextConfig& text, const nlohmann::json& per_layer_config);

// config.json with every architecture field explicit, in the given form. Full layers are described both
// in the released flat form (global_head_dim, num_global_key_value_heads) and as per_layer_config, which
// transformers >= 5.15 reads.
nlohmann::json to_hf_json(const ModelConfig& config);
nlohmann::json text_config_to_json(const TextConfig& text);
// One layer of the derived schedule, as inspect --json and presets --json print it.
nlohmann::json layer_spec_json(const LayerSpec& layer);

}  // namespace g4::gemma4
