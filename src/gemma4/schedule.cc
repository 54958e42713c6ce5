// The per-layer schedule: everything that differs between layers is derived here from layer_types and
// the config alone (pitfalls.md P1), with transformers' validation made strict: where transformers would
// silently force or fail late, we reject with a message naming the field.
#include <map>
#include <string>

#include "gemma4/config.h"

namespace g4::gemma4 {
using json = nlohmann::json;

namespace {

struct LayerOverride {
  std::optional<int64_t> head_dim;
  std::optional<int64_t> kv_heads;
};

Result<std::map<int, LayerOverride>> parse_per_layer_config(const json& j, int64_t num_layers) {
  std::map<int, LayerOverride> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return Status::invalid_argument("per_layer_config: expected an object keyed by layer index");
  for (const auto& [key, value] : j.items()) {
    const std::string where = "per_layer_config." + key;
    int index = -1;
    try {
      size_t used = 0;
      index = std::stoi(key, &used);
      if (used != key.size()) index = -1;
    } catch (...) {
    }
    if (index < 0 || index >= num_layers)
      return Status::invalid_argument(where + ": not a layer index in [0, " + std::to_string(num_layers) + ")");
    if (!value.is_object()) return Status::invalid_argument(where + ": expected an object");
    LayerOverride o;
    for (const auto& [field, v] : value.items()) {
      if (!v.is_number_integer()) return Status::invalid_argument(where + "." + field + ": expected an integer");
      if (field == "head_dim") o.head_dim = v.get<int64_t>();
      else if (field == "num_key_value_heads") o.kv_heads = v.get<int64_t>();
      else return Status::not_supported(where + "." + field + ": per-layer override of this field is not supported");
    }
    out[index] = o;
  }
  return out;
}

Status positive(int64_t v, const char* field) {
  if (v <= 0) return Status::invalid_argument(std::string(field) + ": must be positive, got " + std::to_string(v));
  return {};
}

}  // namespace

Status derive_schedule(TextConfig& t, const json& per_layer_config) {
  const int64_t L = t.num_hidden_layers;
  G4_RETURN_IF_ERROR(positive(L, "num_hidden_layers"));
  G4_RETURN_IF_ERROR(positive(t.vocab_size, "vocab_size"));
  G4_RETURN_IF_ERROR(positive(t.hidden_size, "hidden_size"));
  G4_RETURN_IF_ERROR(positive(t.intermediate_size, "intermediate_size"));
  G4_RETURN_IF_ERROR(positive(t.num_attention_heads, "num_attention_heads"));
  G4_RETURN_IF_ERROR(positive(t.num_key_value_heads, "num_key_value_heads"));
  G4_RETURN_IF_ERROR(positive(t.head_dim, "head_dim"));
  G4_RETURN_IF_ERROR(positive(t.sliding_window, "sliding_window"));
  if (L > kMaxLayers) return Status::invalid_argument("num_hidden_layers: " + std::to_string(L) + " is absurd");
  if (t.rms_norm_eps <= 0) return Status::invalid_argument("rms_norm_eps: must be positive");
  if (t.final_logit_softcapping && *t.final_logit_softcapping <= 0)
    return Status::invalid_argument("final_logit_softcapping: must be positive or null");
  if (static_cast<int64_t>(t.layer_types.size()) != L)
    return Status::invalid_argument("layer_types: has " + std::to_string(t.layer_types.size()) +
                                    " entries but num_hidden_layers is " + std::to_string(L));
  if (t.layer_types.back() != LayerType::kFull)
    return Status::invalid_argument("layer_types[" + std::to_string(L - 1) +
                                    "]: the last layer must be full_attention (transformers would silently force it, "
                                    "changing that layer's shapes)");
  if (t.has_ple()) G4_RETURN_IF_ERROR(positive(t.vocab_size_per_layer_input, "vocab_size_per_layer_input"));
  if (t.hidden_size_per_layer_input < 0) return Status::invalid_argument("hidden_size_per_layer_input: must not be negative");
  if (t.num_global_key_value_heads) G4_RETURN_IF_ERROR(positive(*t.num_global_key_value_heads, "num_global_key_value_heads"));
  if (t.enable_moe_block) {
    if (!t.num_experts) return Status::invalid_argument("num_experts: required when enable_moe_block is true");
    if (!t.top_k_experts) return Status::invalid_argument("top_k_experts: required when enable_moe_block is true");
    if (!t.moe_intermediate_size) return Status::invalid_argument("moe_intermediate_size: required when enable_moe_block is true");
    G4_RETURN_IF_ERROR(positive(*t.num_experts, "num_experts"));
    G4_RETURN_IF_ERROR(positive(*t.moe_intermediate_size, "moe_intermediate_size"));
    if (*t.top_k_experts < 1 || *t.top_k_experts > *t.num_experts)
      return Status::invalid_argument("top_k_experts: " + std::to_string(*t.top_k_experts) + " is not in [1, num_experts=" +
                                      std::to_string(*t.num_experts) + "]");
  }
  if (t.num_kv_shared_layers < 0 || t.num_kv_shared_layers >= L)
    return Status::invalid_argument("num_kv_shared_layers: " + std::to_string(t.num_kv_shared_layers) +
                                    " must be in [0, num_hidden_layers=" + std::to_string(L) + ")");

  G4_ASSIGN_OR_RETURN(auto overrides, parse_per_layer_config(per_layer_config, L));
  const bool has_per_layer = !per_layer_config.is_null();
  const int first_shared = t.first_shared_layer();
  const bool any_shared = t.num_kv_shared_layers > 0;

  t.layers.assign(static_cast<size_t>(L), LayerSpec{});
  for (int l = 0; l < L; ++l) {
    LayerSpec& s = t.layers[l];
    s.index = l;
    s.type = t.layer_types[l];
    const bool full = s.type == LayerType::kFull;
    s.k_eq_v = t.attention_k_eq_v && full;
    // Released flat form: full layers use global_head_dim, and num_global_key_value_heads under K=V (P3: null
    // falls back to num_key_value_heads). With per_layer_config (transformers >= 5.15) only the overrides count.
    int64_t flat_hd = full ? t.global_head_dim : t.head_dim;
    int64_t flat_kv = (s.k_eq_v && t.num_global_key_value_heads) ? *t.num_global_key_value_heads : t.num_key_value_heads;
    auto it = overrides.find(l);
    s.head_dim = has_per_layer ? (it != overrides.end() && it->second.head_dim ? *it->second.head_dim : t.head_dim) : flat_hd;
    s.kv_heads = has_per_layer ? (it != overrides.end() && it->second.kv_heads ? *it->second.kv_heads : t.num_key_value_heads) : flat_kv;
    const std::string where = "layer " + std::to_string(l) + " (" + std::string(layer_type_name(s.type)) + ")";
    if (s.head_dim <= 0 || s.head_dim % 2)
      return Status::invalid_argument(where + ": head_dim " + std::to_string(s.head_dim) + " must be positive and even (RoPE pairs)");
    if (s.kv_heads <= 0 || t.num_attention_heads % s.kv_heads)
      return Status::invalid_argument(where + ": num_attention_heads " + std::to_string(t.num_attention_heads) +
                                      " is not a multiple of its " + std::to_string(s.kv_heads) + " KV heads");
    s.kv_shared = any_shared && l >= first_shared;
    s.mlp_width = t.intermediate_size * ((t.use_double_wide_mlp && s.kv_shared) ? 2 : 1);
    s.has_ple = t.has_ple();
    s.has_moe = t.enable_moe_block;
  }
  // A config with both forms must say the same thing in both.
  if (has_per_layer) {
    for (const LayerSpec& s : t.layers) {
      if (s.type != LayerType::kFull) continue;
      const std::string where = "per_layer_config." + std::to_string(s.index);
      if (t.global_head_dim_given && s.head_dim != t.global_head_dim)
        return Status::invalid_argument(where + ".head_dim=" + std::to_string(s.head_dim) + " contradicts global_head_dim=" +
                                        std::to_string(t.global_head_dim));
      if (s.k_eq_v && t.num_global_key_value_heads && s.kv_heads != *t.num_global_key_value_heads)
        return Status::invalid_argument(where + ".num_key_value_heads=" + std::to_string(s.kv_heads) +
                                        " contradicts num_global_key_value_heads=" + std::to_string(*t.num_global_key_value_heads));
    }
  }
  if (any_shared) {
    for (LayerType type : {LayerType::kSliding, LayerType::kFull}) {
      int source = -1;
      for (int j = 0; j < first_shared; ++j)
        if (t.layer_types[j] == type) source = j;
      for (int l = first_shared; l < L; ++l) {
        if (t.layer_types[l] != type) continue;
        if (source < 0)
          return Status::invalid_argument("num_kv_shared_layers: layer " + std::to_string(l) + " (" +
                                          std::string(layer_type_name(type)) + ") shares K/V but no " +
                                          std::string(layer_type_name(type)) + " layer precedes the shared block at " +
                                          std::to_string(first_shared));
        LayerSpec& s = t.layers[l];
        const LayerSpec& src = t.layers[source];
        if (s.head_dim != src.head_dim || s.kv_heads != src.kv_heads)
          return Status::invalid_argument("layer " + std::to_string(l) + " shares K/V of layer " + std::to_string(source) +
                                          " but its geometry differs (head_dim " + std::to_string(s.head_dim) + " vs " +
                                          std::to_string(src.head_dim) + ", KV heads " + std::to_string(s.kv_heads) + " vs " +
                                          std::to_string(src.kv_heads) + ")");
        s.kv_source = source;
      }
      // transformers stores K/V at the last owner of every type present, shared or not (kv_sharing_modes).
      if (source >= 0) t.layers[source].stores_kv = true;
    }
  }
  return {};
}

}  // namespace g4::gemma4
