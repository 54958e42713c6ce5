#include "gemma4/presets.h"

#include <cmath>

namespace g4::gemma4 {
namespace {

std::vector<LayerType> pattern(int period, int repeats) {  // (period-1)×S + F, repeated
  std::vector<LayerType> v;
  for (int r = 0; r < repeats; ++r)
    for (int i = 0; i < period; ++i) v.push_back(i == period - 1 ? LayerType::kFull : LayerType::kSliding);
  return v;
}

std::vector<LayerType> types(const char* s) {  // "SFSSSF"
  std::vector<LayerType> v;
  for (; *s; ++s) v.push_back(*s == 'F' ? LayerType::kFull : LayerType::kSliding);
  return v;
}

TextConfig base(int64_t hidden, std::vector<LayerType> layer_types, int64_t heads, int64_t kv, int64_t head_dim,
                int64_t global_head_dim, int64_t intermediate, int64_t sliding_window) {
  TextConfig t;
  t.hidden_size = hidden;
  t.num_hidden_layers = static_cast<int64_t>(layer_types.size());
  t.layer_types = std::move(layer_types);
  t.num_attention_heads = heads;
  t.num_key_value_heads = kv;
  t.head_dim = head_dim;
  t.global_head_dim = global_head_dim;
  t.global_head_dim_given = true;
  t.intermediate_size = intermediate;
  t.sliding_window = sliding_window;
  t.final_logit_softcapping = 30.0;
  t.hidden_size_per_layer_input = 0;
  return t;
}

void make_e_series(TextConfig& t, int64_t ple_dim, int64_t ple_vocab, int64_t shared, bool double_wide) {
  t.hidden_size_per_layer_input = ple_dim;
  t.vocab_size_per_layer_input = ple_vocab;
  t.num_kv_shared_layers = shared;
  t.use_double_wide_mlp = double_wide;
}

void make_k_eq_v(TextConfig& t, int64_t global_kv) {
  t.attention_k_eq_v = true;
  t.num_global_key_value_heads = global_kv;
  t.use_bidirectional_attention = "vision";
  t.max_position_embeddings = 262144;
}

void make_moe(TextConfig& t, int64_t experts, int64_t top_k, int64_t expert_width) {
  t.enable_moe_block = true;
  t.num_experts = experts;
  t.top_k_experts = top_k;
  t.moe_intermediate_size = expert_width;
}

std::vector<Preset> build_presets() {
  std::vector<Preset> out;
  auto add = [&](std::string name, std::string structure, std::string description, TextConfig t) {
    Status s = derive_schedule(t, nlohmann::json());
    G4_CHECK(s.ok());
    out.push_back({std::move(name), std::move(structure), std::move(description), std::move(t)});
  };
  {
    TextConfig t = base(1536, pattern(5, 7), 8, 1, 256, 512, 6144, 512);
    make_e_series(t, 256, 262144, 20, true);
    add("e2b", "e2b", "gemma-4-E2B: 35 layers, PLE, 20 KV-shared layers with double-wide MLP", t);
  }
  {
    TextConfig t = base(2560, pattern(6, 7), 8, 2, 256, 512, 10240, 512);
    make_e_series(t, 256, 262144, 18, false);
    add("e4b", "e4b", "gemma-4-E4B: 42 layers, PLE, 18 KV-shared layers", t);
  }
  {
    TextConfig t = base(2816, pattern(6, 5), 16, 8, 256, 512, 2112, 1024);
    make_k_eq_v(t, 2);
    make_moe(t, 128, 8, 704);
    add("26b-a4b", "26b-a4b", "gemma-4-26B-A4B: 30 MoE layers (128 experts, top 8) beside a dense MLP, K=V", t);
  }
  {
    TextConfig t = base(5376, pattern(6, 10), 32, 16, 256, 512, 21504, 1024);
    make_k_eq_v(t, 4);
    add("31b", "31b", "gemma-4-31B: 60 dense layers, K=V on full layers", t);
  }
  auto tiny = [](const char* layer_types, int64_t kv, int64_t intermediate) {
    TextConfig t = base(64, types(layer_types), 4, kv, 32, 64, intermediate, 4);
    t.vocab_size = 128;
    return t;
  };
  {
    TextConfig t = tiny("SFSSSF", 1, 48);
    make_e_series(t, 16, 128, 3, true);
    add("tiny-e2b", "e2b", "E2B structure in miniature: PLE, layers 3-5 KV-shared with double-wide MLP", t);
  }
  {
    TextConfig t = tiny("SSFSSF", 2, 64);
    make_e_series(t, 16, 128, 2, false);
    add("tiny-e4b", "e4b", "E4B structure in miniature: PLE, layers 4-5 KV-shared", t);
  }
  {
    TextConfig t = tiny("SSFSSF", 2, 48);
    make_k_eq_v(t, 1);
    make_moe(t, 6, 2, 16);
    add("tiny-26b-a4b", "26b-a4b", "26B-A4B structure in miniature: 6 experts (top 2) beside a dense MLP, K=V", t);
  }
  {
    TextConfig t = tiny("SSFSSF", 2, 96);
    make_k_eq_v(t, 1);
    add("tiny-31b", "31b", "31B structure in miniature: dense, K=V on full layers", t);
  }
  return out;
}

// Architecture fields that must match for a config to be called a preset. Depth and what depends on it
// (layer_types, num_kv_shared_layers) are compared separately.
bool same_architecture(const TextConfig& a, const TextConfig& b) {
  return a.vocab_size == b.vocab_size && a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_attention_heads == b.num_attention_heads && a.num_key_value_heads == b.num_key_value_heads &&
         a.head_dim == b.head_dim && a.sliding_window == b.sliding_window && a.attention_k_eq_v == b.attention_k_eq_v &&
         a.enable_moe_block == b.enable_moe_block && a.use_double_wide_mlp == b.use_double_wide_mlp &&
         a.num_experts == b.num_experts && a.top_k_experts == b.top_k_experts &&
         a.moe_intermediate_size == b.moe_intermediate_size && a.has_ple() == b.has_ple() &&
         a.hidden_size_per_layer_input == b.hidden_size_per_layer_input &&
         a.layers.back().head_dim == b.layers.back().head_dim && a.layers.back().kv_heads == b.layers.back().kv_heads;
}

}  // namespace

const std::vector<Preset>& all_presets() {
  static const std::vector<Preset> presets = build_presets();  // immutable after first use
  return presets;
}

const Preset* find_preset(std::string_view name) {
  for (const Preset& p : all_presets())
    if (p.name == name) return &p;
  return nullptr;
}

Result<TextConfig> preset_with_layers(const Preset& preset, int layers) {
  TextConfig t = preset.text;
  if (layers == 0 || layers == t.num_hidden_layers) return t;
  if (layers < 1) return Status::invalid_argument("--layers must be at least 1");
  if (layers > t.num_hidden_layers)
    return Status::invalid_argument("--layers " + std::to_string(layers) + " exceeds the preset's " +
                                    std::to_string(t.num_hidden_layers) + " layers");
  const int64_t original = t.num_hidden_layers;
  t.num_hidden_layers = layers;
  t.layer_types.resize(static_cast<size_t>(layers));
  t.layer_types.back() = LayerType::kFull;
  int64_t shared = std::llround(static_cast<double>(layers) * t.num_kv_shared_layers / static_cast<double>(original));
  for (; shared >= 0; --shared) {
    t.num_kv_shared_layers = shared;
    if (derive_schedule(t, nlohmann::json()).ok()) return t;
  }
  return Status::internal("no valid schedule for " + preset.name + " with " + std::to_string(layers) + " layers");
}

std::string structure_of(const TextConfig& t) {
  if (t.enable_moe_block) return "26b-a4b";
  // PLE marks the E-series even when a cut-down depth leaves no room for KV sharing.
  if (t.has_ple()) return t.use_double_wide_mlp ? "e2b" : "e4b";
  if (t.attention_k_eq_v && !t.has_ple()) return "31b";
  return "custom";
}

std::string identify_variant(const TextConfig& t) {
  for (const Preset& p : all_presets()) {
    if (!same_architecture(t, p.text)) continue;
    if (t.layer_types == p.text.layer_types) return p.name;
    return p.name + " (" + std::to_string(t.num_hidden_layers) + " of " + std::to_string(p.text.num_hidden_layers) + " layers)";
  }
  return structure_of(t) + "-like";
}

}  // namespace g4::gemma4
