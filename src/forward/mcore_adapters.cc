#include "forward/mcore_adapters.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "mappings/mapping_table.h"

namespace g4::forward {

namespace {

constexpr std::string_view kIn = ".linear_in.weight", kOut = ".linear_out.weight";

// MB wraps its own linears in AdapterWrappers (A and B under ".adapter."), plain nn.Linear modules (the PLE gate
// and projection) in LinearAdapter, an nn.Linear subclass holding A and B beside the weight.
std::string adapter_stem(const std::string& module) {
  const bool torch_linear = module.ends_with("per_layer_input_gate") || module.ends_with("per_layer_projection");
  return torch_linear ? module : module + ".adapter";
}

// The modules of layer `s` Megatron-Bridge's LoRA can wrap, in data-flow order (forward naming, no ".weight").
std::vector<std::string> wrappable(const gemma4::LayerSpec& s) {
  std::vector<std::string> m{"self_attention.linear_qkv", "self_attention.linear_proj"};
  if (s.has_moe)
    m.insert(m.end(), {"mlp.shared_experts.linear_fc1", "mlp.shared_experts.linear_fc2", "mlp.router", "mlp.experts.experts.linear_fc1",
                       "mlp.experts.experts.linear_fc2"});
  else
    m.insert(m.end(), {"mlp.linear_fc1", "mlp.linear_fc2"});
  if (s.has_ple) m.insert(m.end(), {"per_layer_input_gate", "per_layer_projection"});
  return m;
}

Shape with_axis(const McoreWeights::Location& at, const Shape& own) {
  Shape s;
  if (at.count) s.push_back(at.count);
  s.insert(s.end(), own.begin(), own.end());
  return s;
}

}  // namespace

Result<std::shared_ptr<McoreAdapters>> McoreAdapters::open(const McoreWeights& base, std::shared_ptr<const dcp::Checkpoint> ckpt,
                                                           const McoreAdapterOptions& options) {
  auto out = std::shared_ptr<McoreAdapters>(new McoreAdapters());
  out->ckpt_ = std::move(ckpt);
  out->options_ = options;
  const dcp::Checkpoint& c = *out->ckpt_;
  const std::string where = c.iteration_dir().string();
  std::set<std::string> used;
  // The model-level linear first (E2B's PLE model projection), then each layer's in data-flow order.
  std::vector<std::string> names;
  if (base.config().text.has_ple()) names.push_back("per_layer_model_proj");
  for (const gemma4::LayerSpec& s : base.config().text.layers)
    for (const std::string& module : wrappable(s)) names.push_back("decoder.layers." + std::to_string(s.index) + "." + module);
  for (const std::string& name : names) {
    G4_ASSIGN_OR_RETURN(const McoreWeights::Location a, base.locate(c, adapter_stem(name) + std::string(kIn)));
    G4_ASSIGN_OR_RETURN(const McoreWeights::Location b, base.locate(c, adapter_stem(name) + std::string(kOut)));
    const dcp::TensorEntry* ea = c.find(a.key);
    const dcp::TensorEntry* eb = c.find(b.key);
    if (!ea && !eb) continue;
    if (!ea || !eb)
      return Status::not_found(where + ": '" + (ea ? a.key : b.key) + "' has no partner '" + (ea ? b.key : a.key) + "'");
    used.insert(a.key);
    used.insert(b.key);
    G4_ASSIGN_OR_RETURN(const Shape w, base.shape(name + ".weight"));
    Stored st;
    st.a = a;
    st.b = b;
    st.expert_weight = name.find(".mlp.experts.") != std::string::npos;
    st.out = w[w.size() - 2];
    st.in = w.back();
    const size_t lead = a.count ? 1 : 0;
    // A: [.., (E,) r, in]; the E axis only on expert adapters, absent in MB's legacy shared layout.
    const size_t own = ea->shape.size() - std::min(ea->shape.size(), lead);
    if (ea->shape.size() < lead + 2 || own > (st.expert_weight ? 3u : 2u))
      return Status::mismatch(where + ": '" + a.key + "' has shape " + shape_to_string(ea->shape) + ", not an adapter A of '" +
                              base.prefix() + name + ".weight' " + shape_to_string(w));
    st.rank = ea->shape[ea->shape.size() - 2];
    if (own == 3) st.experts = w[0];
    st.a_shape = {st.rank, st.in};
    st.b_shape = {st.out, st.rank};
    if (st.experts) st.a_shape.insert(st.a_shape.begin(), st.experts), st.b_shape.insert(st.b_shape.begin(), st.experts);
    for (const auto& [at, entry, shape] : {std::tuple{a, ea, st.a_shape}, std::tuple{b, eb, st.b_shape}})
      if (entry->shape != with_axis(at, shape) || st.rank <= 0)
        return Status::mismatch(where + ": '" + at.key + "' has shape " + shape_to_string(entry->shape) + ", the wrapped weight '" +
                                base.prefix() + name + ".weight' " + shape_to_string(w) + " and rank " + std::to_string(st.rank) +
                                " imply " + shape_to_string(with_axis(at, shape)));
    out->stored_[name + ".weight"] = st;
    out->order_.push_back(name + ".weight");
  }
  // An adapter the forward would not apply must not pass unnoticed (the towers are outside the text forward).
  for (const auto& [key, entry] : c.metadata().tensors) {
    if (!(key.ends_with(kIn) || key.ends_with(kOut)) || used.count(key)) continue;
    const bool tower = std::any_of(mappings::kTowerPrefixes.begin(), mappings::kTowerPrefixes.end(),
                                   [&](std::string_view t) { return key.starts_with(t); });
    if (key.starts_with(base.prefix()) && !tower)
      return Status::not_supported(where + ": adapter '" + key + "' wraps a module the forward does not adapt");
  }
  if (out->order_.empty()) return Status::not_found(where + ": no LoRA adapter (no '*" + std::string(kIn) + "' key) for the language model");
  return out;
}

std::vector<std::string> McoreAdapters::weights() const { return order_; }

Result<std::vector<float>> McoreAdapters::read(const McoreWeights::Location& at, const Shape& shape) const {
  std::vector<int64_t> index, axes;
  if (at.count) index = {at.index}, axes = {at.count};
  G4_ASSIGN_OR_RETURN(auto slab, ckpt_->read_slab(at.key, index, axes, shape));
  const size_t es = dtype_size(slab->dtype);
  if (!dtype_converts_to_f32(slab->dtype) || !dtype_is_float(slab->dtype))
    return Status::not_supported(ckpt_->iteration_dir().string() + ": adapter '" + at.key + "' has dtype " + std::string(dtype_name(slab->dtype)));
  std::vector<float> v(slab->size / es);
  G4_RETURN_IF_ERROR(slab->visit(0, slab->size, [&](std::span<const std::byte> src, uint64_t offset) {
    to_f32(slab->dtype, src.data(), v.data() + offset / es, src.size() / es);
    return Status();
  }));
  return v;
}

Result<std::shared_ptr<const LowRank>> McoreAdapters::delta(const std::string& weight) const {
  auto it = stored_.find(weight);
  if (it == stored_.end()) return std::shared_ptr<const LowRank>();
  const Stored& st = it->second;
  auto d = std::make_shared<LowRank>();
  d->rank = st.rank;
  d->in = st.in;
  d->out = st.out;
  d->scale = options_.alpha / static_cast<double>(st.rank);
  G4_ASSIGN_OR_RETURN(d->a, read(st.a, st.a_shape));
  G4_ASSIGN_OR_RETURN(d->b, read(st.b, st.b_shape));
  if (st.experts && !options_.share_expert_adapters) {
    d->experts = st.experts;
  } else if (st.experts) {  // one shared adapter in every slot: MB's load averages the slots (exact for copies)
    for (std::vector<float>* f : {&d->a, &d->b}) {
      const size_t n = f->size() / static_cast<size_t>(st.experts);
      std::vector<double> sum(n, 0.0);
      for (int64_t e = 0; e < st.experts; ++e)
        for (size_t i = 0; i < n; ++i) sum[i] += (*f)[static_cast<size_t>(e) * n + i];
      f->resize(n);
      for (size_t i = 0; i < n; ++i) (*f)[i] = static_cast<float>(sum[i] / static_cast<double>(st.experts));
    }
  }
  return std::shared_ptr<const LowRank>(std::move(d));
}

}  // namespace g4::forward
