#include "convert/conversion_plan.h"

#include <algorithm>

namespace g4::convert {
namespace {

using gemma4::LayerSpec;
using mappings::Rule;
using mappings::Transform;
using mappings::When;

std::string substitute(std::string_view name, int layer) {
  std::string out(name);
  if (size_t at = out.find("{l}"); at != std::string::npos) out.replace(at, 3, std::to_string(layer));
  return out;
}

bool applies(When when, const gemma4::TextConfig& text, const LayerSpec* layer) {
  switch (when) {
    case When::kAlways: return true;
    case When::kPle: return layer ? layer->has_ple : text.has_ple();
    case When::kUntied: return !text.tie_word_embeddings;
  }
  return false;
}

class PlanBuilder {
 public:
  PlanBuilder(const gemma4::ModelConfig& config, ConversionPlan& plan) : config_(config), text_(config.text), plan_(plan) {}

  Status add_rule(const Rule& rule, const LayerSpec* layer) {
    const int l = layer ? layer->index : -1;
    std::vector<int> sources;
    for (std::string_view hf : rule.hf) {
      if (hf.empty()) break;
      std::string name = rule.when == When::kUntied ? std::string(hf) : config_.text_prefix() + substitute(hf, l);
      auto it = plan_.hf_index.find(name);
      sources.push_back(it == plan_.hf_index.end() ? -1 : it->second);
    }
    const std::string param_name = module_name(rule.megatron, l, plan_.prefix);
    MegatronParam p;
    p.name = param_name;
    p.rule = &rule;
    p.layer = l;
    p.experts = rule.experts;
    p.vocab_rows = rule.vocab_rows;
    p.slot = storage_slot(rule.megatron, l, text_, plan_.layer_keys, plan_.prefix);
    switch (rule.transform) {
      case Transform::kIdentity: {
        if (sources[0] < 0) return missing(rule, 0, l);
        const HfSlot& s = plan_.hf[sources[0]];
        p.shape = s.shape;
        p.pieces.push_back({sources[0], Fill::kNone, 0, 0, row_count(s.shape)});
        break;
      }
      case Transform::kGateUp: {
        if (sources[0] < 0) return missing(rule, 0, l);
        if (sources[1] < 0) return missing(rule, 1, l);
        const HfSlot &g = plan_.hf[sources[0]], &u = plan_.hf[sources[1]];
        if (g.shape != u.shape) return Status::invalid_argument(param_name + ": gate and up shapes differ");
        p.shape = {2 * g.shape[0], g.shape[1]};
        p.pieces.push_back({sources[0], Fill::kNone, 0, 0, g.shape[0]});
        p.pieces.push_back({sources[1], Fill::kNone, 0, g.shape[0], g.shape[0]});
        break;
      }
      case Transform::kQkv: {
        if (sources[0] < 0) return missing(rule, 0, l);
        if (sources[1] < 0) return missing(rule, 1, l);
        const int v = sources[2] >= 0 ? sources[2] : (rule.v_from_k && layer->k_eq_v ? sources[1] : -1);
        if (v < 0) return missing(rule, 2, l);
        const int64_t nq = text_.num_attention_heads, ng = layer->kv_heads, hd = layer->head_dim;
        const HfSlot &q = plan_.hf[sources[0]], &k = plan_.hf[sources[1]];
        if (ng <= 0 || nq % ng != 0) return Status::invalid_argument(param_name + ": heads not divisible into query groups");
        if (q.shape[0] != nq * hd || k.shape[0] != ng * hd)
          return Status::invalid_argument(param_name + ": q/k rows disagree with the layer's heads and head_dim");
        p.shape = {(nq + 2 * ng) * hd, q.shape[1]};
        const int64_t per_group = nq / ng * hd;
        int64_t dst = 0;
        for (int64_t g = 0; g < ng; ++g) {
          p.pieces.push_back({sources[0], Fill::kNone, g * per_group, dst, per_group});
          dst += per_group;
          p.pieces.push_back({sources[1], Fill::kNone, g * hd, dst, hd});
          dst += hd;
          p.pieces.push_back({v, Fill::kNone, g * hd, dst, hd});
          dst += hd;
        }
        break;
      }
    }
    plan_.params.push_back(std::move(p));
    return {};
  }

 private:
  Status missing(const Rule& rule, int k, int layer) {
    return Status::invalid_argument("mapping '" + module_name(rule.megatron, layer, plan_.prefix) + "' needs HF tensor '" +
                                    config_.text_prefix() + substitute(rule.hf[k], layer) +
                                    "', which this config does not have (wrong family table?)");
  }

  const gemma4::ModelConfig& config_;
  const gemma4::TextConfig& text_;
  ConversionPlan& plan_;
};

}  // namespace

int64_t row_count(const Shape& shape) { return shape.empty() ? 1 : shape[0]; }

int64_t row_elems(const Shape& shape) {
  int64_t n = 1;
  for (size_t d = 1; d < shape.size(); ++d) n *= shape[d];
  return n;
}

Result<ConversionPlan> build_plan(const gemma4::ModelConfig& config, const std::vector<std::pair<std::string, Shape>>& tower_tensors,
                                  std::optional<std::string_view> language_prefix) {
  const gemma4::TextConfig& text = config.text;
  ConversionPlan plan;
  plan.table = text.enable_moe_block ? &mappings::moe_text_table() : &mappings::dense_text_table();
  plan.prefix = language_prefix ? std::string(*language_prefix)
                : config.form == gemma4::ModelForm::kConditional ? std::string(mappings::kVlLanguagePrefix) : "";
  if (!plan.prefix.empty() && plan.prefix != mappings::kVlLanguagePrefix)
    return Status::invalid_argument("language-model prefix '" + plan.prefix + "' is neither '' nor 'language_model.'");
  plan.layer_keys = layer_keys_for(text);
  for (const gemma4::HfTensor& t : gemma4::hf_text_tensors(config)) {
    plan.hf_index[t.name] = static_cast<int>(plan.hf.size());
    plan.hf.push_back({t.name, t.shape, t.role, t.layer, t.optional, false});
  }
  PlanBuilder builder(config, plan);
  for (const Rule& rule : plan.table->model_rules)
    if (applies(rule.when, text, nullptr)) G4_RETURN_IF_ERROR(builder.add_rule(rule, nullptr));
  for (const LayerSpec& layer : text.layers)
    for (const Rule& rule : plan.table->layer_rules)
      if (applies(rule.when, text, &layer)) G4_RETURN_IF_ERROR(builder.add_rule(rule, &layer));

  // Towers: unmodified HF modules under their HF names minus "model." (megatron-bridge-layout.md §1.3).
  for (const auto& [name, shape] : tower_tensors) {
    if (!name.starts_with(mappings::kTowerHfRoot))
      return Status::invalid_argument("tower tensor '" + name + "' lacks the " + std::string(mappings::kTowerHfRoot) + " prefix");
    const int s = static_cast<int>(plan.hf.size());
    plan.hf_index[name] = s;
    plan.hf.push_back({name, shape, gemma4::TensorRole::kLinear, -1, false, true});
    MegatronParam p;
    p.name = name.substr(mappings::kTowerHfRoot.size());
    p.shape = shape;
    p.slot.key = p.name;
    p.pieces.push_back({s, Fill::kNone, 0, 0, row_count(shape)});
    plan.params.push_back(std::move(p));
  }

  for (const mappings::ExtraStateModule& m : plan.table->extra_state) {
    const std::string module = std::string(m.module) + "._extra_state";
    if (m.module.find("{l}") == std::string_view::npos) {
      if (applies(m.when, text, nullptr)) plan.extra_state.push_back({plan.prefix + module + "/shard_0_1", m.payload, m.requested});
      continue;
    }
    for (const LayerSpec& layer : text.layers) {
      if (!applies(m.when, text, &layer)) continue;
      StorageSlot slot = storage_slot(module, layer.index, text, plan.layer_keys, plan.prefix);
      if (!m.experts) {
        plan.extra_state.push_back({sharded_object_key(slot.key, slot.index, slot.axes), m.payload, m.requested});
        continue;
      }
      const int64_t E = text.num_experts.value_or(0);
      for (int64_t e = 0; e < E; ++e) {
        std::vector<int64_t> index = slot.index, axes = slot.axes;
        index.push_back(e);
        axes.push_back(E);
        plan.extra_state.push_back({sharded_object_key(slot.key, index, axes), m.payload, m.requested});
      }
    }
  }
  return plan;
}

Result<std::vector<std::string>> bind_sources(ConversionPlan& plan, const std::set<std::string>& present, std::string_view source_name) {
  const std::string where(source_name);
  for (MegatronParam& p : plan.params) {
    for (Piece& piece : p.pieces) {
      if (piece.source < 0) continue;
      const HfSlot& s = plan.hf[piece.source];
      if (present.count(s.name)) continue;
      if (!s.optional) return Status::not_found(where + ": tensor '" + s.name + "' is missing (needed for " + p.name + ")");
      // KV-shared layers of re-saved checkpoints have no K/V/k_norm: the rule's stand-in, never read.
      piece.fill = p.rule ? p.rule->absent_fill : Fill::kZeros;
      piece.source = -1;
    }
  }
  std::set<int> consumed;
  for (const MegatronParam& p : plan.params)
    for (const Piece& piece : p.pieces)
      if (piece.source >= 0) consumed.insert(piece.source);
  std::vector<std::string> skipped;
  for (const std::string& name : present) {
    auto it = plan.hf_index.find(name);
    if (it == plan.hf_index.end())
      return Status::invalid_argument(where + ": tensor '" + name + "' is not consumed by any mapping rule");
    if (consumed.count(it->second)) continue;
    if (!plan.hf[it->second].optional)
      return Status::invalid_argument(where + ": tensor '" + name + "' is not consumed by any mapping rule");
    skipped.push_back(name);
  }
  return skipped;
}

std::vector<HfGather> invert_plan(const ConversionPlan& plan) {
  struct Candidate {
    HfGather::Ref ref;
    size_t order;
  };
  std::vector<std::vector<Candidate>> refs(plan.hf.size());
  size_t order = 0;
  for (size_t p = 0; p < plan.params.size(); ++p)
    for (const Piece& piece : plan.params[p].pieces)
      if (piece.source >= 0)
        refs[piece.source].push_back({{static_cast<int>(p), piece.src_row, piece.dst_row, piece.rows}, order++});
  std::vector<HfGather> out(plan.hf.size());
  for (size_t s = 0; s < refs.size(); ++s) {
    auto& list = refs[s];
    std::sort(list.begin(), list.end(), [](const Candidate& a, const Candidate& b) {
      return a.ref.src_row != b.ref.src_row ? a.ref.src_row < b.ref.src_row : a.order < b.order;
    });
    int64_t covered_to = 0;
    for (const Candidate& c : list) {
      if (c.ref.src_row >= covered_to) {
        out[s].canonical.push_back(c.ref);
        covered_to = c.ref.src_row + c.ref.rows;
      } else {
        out[s].duplicates.push_back(c.ref);
      }
    }
  }
  return out;
}

Status check_contract(const ConversionPlan& plan) {
  std::set<std::pair<std::string, std::vector<int64_t>>> slots;
  for (const MegatronParam& p : plan.params) {
    if (!slots.insert({p.slot.key, p.slot.index}).second)
      return Status::internal("contract: storage slot '" + p.slot.key + "' is written twice (" + p.name + ")");
    int64_t next = 0;
    for (const Piece& piece : p.pieces) {
      if (piece.dst_row != next) return Status::internal("contract: " + p.name + " has a gap or overlap at row " + std::to_string(next));
      if (piece.source >= 0 && row_elems(plan.hf[piece.source].shape) != row_elems(p.shape))
        return Status::internal("contract: " + p.name + " mixes row sizes with '" + plan.hf[piece.source].name + "'");
      next += piece.rows;
    }
    if (next != row_count(p.shape)) return Status::internal("contract: " + p.name + " rows are not all written");
  }
  const std::vector<HfGather> gathers = invert_plan(plan);
  for (size_t s = 0; s < plan.hf.size(); ++s) {
    const HfSlot& slot = plan.hf[s];
    const HfGather& g = gathers[s];
    if (g.canonical.empty()) {
      if (slot.optional) continue;
      return Status::internal("contract: HF tensor '" + slot.name + "' is consumed by no parameter");
    }
    int64_t next = 0;
    for (const HfGather::Ref& r : g.canonical) {
      if (r.src_row != next) return Status::internal("contract: HF tensor '" + slot.name + "' rows are not covered exactly once");
      if (r.param != g.canonical[0].param)
        return Status::internal("contract: HF tensor '" + slot.name + "' is split over several parameters");
      next += r.rows;
    }
    if (next != row_count(slot.shape)) return Status::internal("contract: HF tensor '" + slot.name + "' rows are not all consumed");
    // Only a V-from-K slot may repeat rows, and only inside the same parameter.
    for (const HfGather::Ref& r : g.duplicates)
      if (r.param != g.canonical[0].param || !plan.params[r.param].rule || !plan.params[r.param].rule->v_from_k)
        return Status::internal("contract: HF tensor '" + slot.name + "' is consumed twice (" + plan.params[r.param].name + ")");
  }
  return {};
}

}  // namespace g4::convert
