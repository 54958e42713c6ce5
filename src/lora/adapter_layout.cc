#include "lora/adapter_layout.h"

#include <algorithm>
#include <set>

#include "mappings/mapping_table.h"

namespace g4::lora {
namespace {

using convert::ConversionPlan;
using convert::HfSlot;
using convert::MegatronParam;

constexpr std::string_view kWeight = ".weight";
constexpr std::string_view kAdapter = ".adapter.";
constexpr std::string_view kLinearIn = ".linear_in.weight";
constexpr std::string_view kLinearOut = ".linear_out.weight";

// A key any of MB's LoRA wrappers writes: under ".adapter." (AdapterWrappers) or a LinearAdapter's A or B.
bool is_adapter_key(const std::string& key) {
  return key.find(kAdapter) != std::string::npos || key.ends_with(kLinearIn) || key.ends_with(kLinearOut);
}

std::string dims(const Shape& s) {
  std::string out = "[";
  for (size_t k = 0; k < s.size(); ++k) out += (k ? ", " : "") + std::to_string(s[k]);
  return out + "]";
}

std::string strip_weight(std::string_view name) {
  return std::string(name.ends_with(kWeight) ? name.substr(0, name.size() - kWeight.size()) : name);
}

// Keys of LoRA variants a PEFT LoRA adapter cannot state (MB 0.6.2 peft/dora_layers.py, canonical_lora.py).
Status refuse_variant(const std::string& key, const std::string& where) {
  if (key.find(".adapter.weight_magnitude") != std::string::npos)
    return Status::invalid_argument(where + ": '" + key + "' is a DoRA magnitude vector: DoRA has no exact PEFT LoRA form");
  if (key.find(".adapter.adapter_") != std::string::npos)
    return Status::invalid_argument(where + ": '" + key +
                                    "' is a canonical-LoRA adapter (separate q/k/v or gate/up adapters), which g4convert does not read");
  return {};
}

// MB's expert rank under normalize_moe_lora (peft/utils.py get_effective_lora_dim, align_expert_dim_for_tp):
// dim / topk, for fc1 rounded up to a multiple of the expert-TP size, which the checkpoint does not record.
bool expert_rank_fits(int64_t stored, int64_t dim, int64_t topk, bool column) {
  if (topk <= 0 || dim % topk != 0) return false;
  const int64_t d = dim / topk;
  if (stored == d) return true;
  if (!column || stored < d) return false;
  for (int64_t t = 2; t <= stored; ++t)
    if (stored % t == 0 && (d + t - 1) / t * t == stored) return true;
  return false;
}

class Deriver {
 public:
  Deriver(const dcp::Checkpoint& ckpt, const ConversionPlan& plan, const gemma4::ModelConfig& config, const LoraSettings& settings)
      : ckpt_(ckpt), plan_(plan), config_(config), settings_(settings), where_(ckpt.iteration_dir().string()) {}

  Result<AdapterLayout> run() {
    AdapterLayout layout;
    layout.plan = &plan_;
    layout.text_prefix = config_.text_prefix();
    layout.rank = settings_.dim;
    std::set<std::string> pending;
    for (const auto& [key, entry] : ckpt_.metadata().tensors) {
      if (!is_adapter_key(key) || dcp::is_training_state_key(key)) continue;
      G4_RETURN_IF_ERROR(refuse_variant(key, where_));
      pending.insert(key);
    }
    for (size_t p = 0; p < plan_.params.size(); ++p) {
      const MegatronParam& param = plan_.params[p];
      if (!param.rule || !mappings::is_linear(param.rule->parallel) || !param.rule->megatron.ends_with(kWeight)) continue;
      G4_RETURN_IF_ERROR(add_param(static_cast<int>(p), layout, pending));
    }
    if (!pending.empty())
      return Status::invalid_argument(where_ + ": adapter tensor '" + *pending.begin() +
                                      "' wraps no linear weight of this model's mapping table (wrong config, or an adapter g4convert does not know)");
    if (layout.adapters.empty()) return Status::invalid_argument(where_ + ": no LoRA adapter tensors ('*.adapter.linear_in.weight')");
    nest_expert_parameters(layout);
    return layout;
  }

 private:
  Status add_param(int p, AdapterLayout& layout, std::set<std::string>& pending) {
    const MegatronParam& param = plan_.params[p];
    const std::string base = strip_weight(param.rule->megatron);
    MegatronAdapter ad;
    ad.param = p;
    ad.module = strip_weight(param.name);
    const gemma4::TextConfig& text = config_.text;
    const mappings::LoraKeySuffixes keys = mappings::lora_key_suffixes(*param.rule);
    ad.a = convert::storage_slot(base + std::string(keys.a), param.layer, text, plan_.layer_keys, plan_.prefix);
    ad.b = convert::storage_slot(base + std::string(keys.b), param.layer, text, plan_.layer_keys, plan_.prefix);
    const dcp::TensorEntry* ea = ckpt_.find(ad.a.key);
    const dcp::TensorEntry* eb = ckpt_.find(ad.b.key);
    if (!ea && !eb) return {};
    if (!ea || !eb)
      return Status::invalid_argument(where_ + ": '" + (ea ? ad.a.key : ad.b.key) + "' has no " + (ea ? "linear_out (B)" : "linear_in (A)") +
                                      " beside it ('" + (ea ? ad.b.key : ad.a.key) + "' is missing)");
    pending.erase(ad.a.key);
    pending.erase(ad.b.key);
    ad.a_dtype = ea->dtype;
    ad.b_dtype = eb->dtype;
    if (!dtype_converts_to_f32(ea->dtype) || !dtype_converts_to_f32(eb->dtype))
      return Status::invalid_argument(where_ + ": '" + ad.a.key + "': adapter weights must be floating point");

    // The base weight: [out, in], or [E, out, in] for routed experts.
    const bool experts = param.rule->experts;
    const int64_t E = experts ? param.shape[0] : 0;
    const int64_t out = experts ? param.shape[1] : param.shape[0];
    const int64_t in = experts ? param.shape[2] : convert::row_elems(param.shape);
    const size_t lead = ad.a.axes.size();
    auto own_dims = [&](const dcp::TensorEntry& e) -> Result<Shape> {
      if (e.shape.size() < lead) return Status::invalid_argument(where_ + ": '" + e.fqn + "' has shape " + dims(e.shape) + ", too few dims");
      return Shape(e.shape.begin() + static_cast<int64_t>(lead), e.shape.end());
    };
    G4_ASSIGN_OR_RETURN(Shape da, own_dims(*ea));
    G4_ASSIGN_OR_RETURN(Shape db, own_dims(*eb));
    if (experts) {
      const bool a3 = da.size() == 3, b3 = db.size() == 3;
      if (a3 != b3)
        return Status::invalid_argument(where_ + ": '" + (a3 ? ad.b.key : ad.a.key) +
                                        "' has no expert axis while its partner has one: SGLang's shared-outer expert layout "
                                        "(experts_shared_outer_loras) has no exact PEFT form");
      ad.experts = a3 ? ExpertStorage::kExpertAxis : ExpertStorage::kLegacyShared;
      ad.num_experts = E;
      if (ad.experts == ExpertStorage::kLegacyShared && !settings_.share_expert_adapters)
        return Status::invalid_argument(where_ + ": '" + ad.a.key + "' has no expert axis (a shared adapter) but " +
                                        settings_.source.string() + " says share_expert_adapters: false");
    }
    const size_t own = ad.experts == ExpertStorage::kExpertAxis ? 3 : 2;
    if (da.size() != own || db.size() != own)
      return shape_error(*ea, *eb, "wrong number of dims");
    const int64_t ra = da[own - 2], rb = db[own - 1];
    if (ra < 1 || ra != rb)
      return Status::invalid_argument(where_ + ": '" + ad.a.key + "' has rank " + std::to_string(ra) + " but '" + ad.b.key + "' has " +
                                      std::to_string(rb));
    ad.rank = ra;
    ad.a_shape = {ra, in};
    ad.b_shape = {out, ra};
    if (own == 3) {
      ad.a_shape.insert(ad.a_shape.begin(), E);
      ad.b_shape.insert(ad.b_shape.begin(), E);
    }
    // Shapes against the config, stacked axes included, and chunks tiling them (the reader's checks).
    G4_RETURN_IF_ERROR(ckpt_.stored_shape(ad.a.key, ad.a.axes, ad.a_shape).status());
    G4_RETURN_IF_ERROR(ckpt_.stored_shape(ad.b.key, ad.b.axes, ad.b_shape).status());

    const bool normalized = experts && settings_.normalize_moe_lora;
    const bool rank_ok = normalized ? expert_rank_fits(ra, settings_.dim, config_.text.top_k_experts.value_or(0),
                                                       param.rule->parallel == mappings::Parallel::kColumn)
                                    : ra == settings_.dim;
    if (!rank_ok)
      return Status::invalid_argument(where_ + ": '" + ad.a.key + "' has rank " + std::to_string(ra) + ", but " + settings_where() +
                                      " implies " +
                                      (normalized ? "dim / moe_router_topk = " + std::to_string(settings_.dim) + " / " +
                                                        std::to_string(config_.text.top_k_experts.value_or(0)) + " (normalize_moe_lora)"
                                                  : std::to_string(settings_.dim)));

    const int a = static_cast<int>(layout.adapters.size());
    layout.adapters.push_back(ad);
    if (post_norm_module(param.rule->megatron))
      layout.inexact.push_back({ad.module, "Megatron-Bridge adds it after the post-attention norm (TERowParallelLinearLayerNorm), "
                                           "an HF o_proj LoRA before it"});
    if (base.ends_with(".router"))
      layout.inexact.push_back({ad.module, "Megatron-Bridge's LoRATopKRouter feeds the adapter the router's raw input, while "
                                           "Gemma4TopKRouter.gating (and HF's router.proj) normalises and scales it first"});
    add_targets(a, layout);
    return {};
  }

  // Whether the table states a post-layernorm inside the wrapped module (TERowParallelLinearLayerNorm): MB's
  // adapter then adds its output after that norm.
  bool post_norm_module(std::string_view rule_name) const {
    const std::string norm = strip_weight(rule_name) + ".post_layernorm.weight";
    for (const auto* rules : {&plan_.table->model_rules, &plan_.table->layer_rules})
      for (const mappings::Rule& r : *rules)
        if (r.megatron == norm) return true;
    return false;
  }

  // The HF targets of one adapter from its base weight's pieces, source by source in first-reference order.
  void add_targets(int a, AdapterLayout& layout) {
    const MegatronAdapter& ad = layout.adapters[a];
    const MegatronParam& param = plan_.params[ad.param];
    std::vector<int> order;
    std::map<int, std::vector<convert::Piece>> by_source;
    for (const convert::Piece& piece : param.pieces) {
      if (!by_source.count(piece.source)) order.push_back(piece.source);
      by_source[piece.source].push_back(piece);
    }
    for (int s : order) {
      const HfSlot& slot = plan_.hf[s];
      std::vector<RowRun> runs, repeated;
      std::set<int64_t> seen;
      for (const convert::Piece& piece : by_source[s]) {
        // A second reference to rows already taken: the V slot of a K=V layer, built from K (Rule::v_from_k).
        (seen.insert(piece.src_row).second ? runs : repeated).push_back({piece.dst_row, piece.src_row, piece.rows});
      }
      std::sort(runs.begin(), runs.end(), [](const RowRun& x, const RowRun& y) { return x.hf_row < y.hf_row; });
      if (!repeated.empty()) layout.untrained.push_back({a, repeated, "the V slot of an attention_k_eq_v layer (V is K's output)"});
      if (slot.optional) {
        // KV-shared layers: HF builds no module for their K/V, Megatron discards their output.
        layout.untrained.push_back({a, runs, "the " + slot.name + " rows of a KV-shared layer (HF has no such module)"});
        continue;
      }
      PeftTarget t;
      t.adapter = a;
      t.layer = param.layer;
      if (ad.experts != ExpertStorage::kNone) {
        const size_t dot = slot.name.rfind('.');
        t.module = slot.name.substr(0, dot);
        t.parameter = slot.name.substr(dot + 1);
        t.out_rows = slot.shape[1];
        t.b_rows = {{0, 0, t.out_rows}};
      } else {
        t.module = strip_weight(slot.name);
        t.out_rows = convert::row_count(slot.shape);
        t.b_rows = runs;
      }
      t.key_prefix = "base_model.model." + t.module;
      if (ad.rank != layout.rank) layout.rank_pattern[t.path()] = ad.rank;
      layout.targets.push_back(std::move(t));
    }
  }

  // PEFT wraps a module's targeted parameters in registration order (gate_up_proj, then down_proj: the table's
  // order), each wrapper around the previous, so every later one adds a ".base_layer" to the earlier ones' keys.
  static void nest_expert_parameters(AdapterLayout& layout) {
    for (size_t i = 0; i < layout.targets.size(); ++i) {
      PeftTarget& t = layout.targets[i];
      if (t.parameter.empty()) continue;
      for (size_t j = i + 1; j < layout.targets.size(); ++j)
        if (!layout.targets[j].parameter.empty() && layout.targets[j].module == t.module) t.key_prefix += ".base_layer";
    }
  }

  Status shape_error(const dcp::TensorEntry& a, const dcp::TensorEntry& b, const char* why) const {
    return Status::invalid_argument(where_ + ": '" + a.fqn + "' " + dims(a.shape) + " / '" + b.fqn + "' " + dims(b.shape) + ": " + why +
                                    " for this config's LoRA adapter");
  }
  std::string settings_where() const { return settings_.source.empty() ? std::string("--rank") : settings_.source.string(); }

  const dcp::Checkpoint& ckpt_;
  const ConversionPlan& plan_;
  const gemma4::ModelConfig& config_;
  const LoraSettings& settings_;
  std::string where_;
};

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string alternation(const std::vector<std::string>& items) {
  if (items.size() == 1) return items[0];
  std::string out = "(";
  for (size_t k = 0; k < items.size(); ++k) out += (k ? "|" : "") + items[k];
  return out + ")";
}

}  // namespace

bool AdapterLayout::has_expert_targets() const {
  return std::any_of(targets.begin(), targets.end(), [](const PeftTarget& t) { return !t.parameter.empty(); });
}

Result<AdapterLayout> derive_adapter_layout(const dcp::Checkpoint& ckpt, const ConversionPlan& plan, const gemma4::ModelConfig& config,
                                            const LoraSettings& settings) {
  return Deriver(ckpt, plan, config, settings).run();
}

std::string target_modules_regex(const AdapterLayout& layout) {
  // The text prefix is common to every target; layer modules are grouped by suffix, and a suffix exported on every
  // layer is written with \d+, else with its layer list (so no module HF may build on other layers is wrapped).
  int64_t num_layers = 0;
  for (const HfSlot& s : layout.plan->hf) num_layers = std::max<int64_t>(num_layers, s.layer + 1);
  std::map<std::string, std::set<int>> layers_of;  // suffix -> exported layers
  std::vector<std::string> suffixes, model_level;
  for (const PeftTarget& t : layout.targets) {
    if (!t.parameter.empty()) continue;
    const std::string rest = t.module.substr(layout.text_prefix.size());  // every text module starts with the prefix
    const std::string layer_part = "layers." + std::to_string(t.layer) + ".";
    if (t.layer < 0 || !rest.starts_with(layer_part)) {
      model_level.push_back(rest);
      continue;
    }
    const std::string suffix = rest.substr(layer_part.size());
    if (!layers_of.count(suffix)) suffixes.push_back(suffix);
    layers_of[suffix].insert(t.layer);
  }
  // Group suffixes by their layer set, keeping the first-seen order.
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (const std::string& suffix : suffixes) {
    const std::set<int>& ls = layers_of[suffix];
    std::string key;
    if (static_cast<int64_t>(ls.size()) == num_layers) {
      key = "\\d+";
    } else {
      std::vector<std::string> ids;
      for (int l : ls) ids.push_back(std::to_string(l));
      key = alternation(ids);
    }
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), {key, {}});
    it->second.push_back(regex_escape(suffix));
  }
  std::vector<std::string> alts;
  for (const auto& [key, items] : groups) alts.push_back("layers\\." + key + "\\." + alternation(items));
  for (const std::string& m : model_level) alts.push_back(regex_escape(m));  // the PLE model projection
  if (alts.empty()) return "";
  return "^" + regex_escape(layout.text_prefix) + alternation(alts) + "$";
}

std::vector<std::string> target_parameters(const AdapterLayout& layout) {
  std::vector<std::string> out;
  for (const PeftTarget& t : layout.targets)
    if (!t.parameter.empty()) out.push_back(t.path());
  return out;
}

Result<AdapterValues> read_adapter(const dcp::Checkpoint& ckpt, const MegatronAdapter& adapter) {
  AdapterValues v;
  auto read = [&](const convert::StorageSlot& slot, const Shape& shape, std::vector<float>& out) -> Status {
    G4_ASSIGN_OR_RETURN(std::shared_ptr<const dcp::Slab> slab, ckpt.read_slab(slot.key, slot.index, slot.axes, shape));
    const uint64_t es = dtype_size(slab->dtype);
    out.assign(slab->size / es, 0.0f);
    return slab->visit(0, slab->size, [&](std::span<const std::byte> bytes, uint64_t at) -> Status {
      to_f32(slab->dtype, bytes.data(), out.data() + at / es, bytes.size() / es);
      return Status();
    });
  };
  G4_RETURN_IF_ERROR(read(adapter.a, adapter.a_shape, v.a));
  G4_RETURN_IF_ERROR(read(adapter.b, adapter.b_shape, v.b));
  return v;
}

}  // namespace g4::lora
