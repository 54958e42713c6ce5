#include "forward/mcore_weights.h"

#include "convert/mcore_keys.h"

#include <algorithm>

#include "convert/conversion_plan.h"
#include "convert/export_config.h"
#include "convert/mcore_files.h"
#include "convert/vocab_padding.h"

namespace g4::forward {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kLayers = "decoder.layers.", kAttention = "self_attention.";

}  // namespace

Result<McoreWeights> McoreWeights::open(const fs::path& dir, const fs::path& config_path) {
  McoreWeights w;
  G4_ASSIGN_OR_RETURN(std::unique_ptr<dcp::Checkpoint> ckpt, dcp::Checkpoint::open(dir));
  w.ckpt_ = std::move(ckpt);
  convert::ExportConfigOptions config_options;  // the same choice as mcore2hf's (export_config.h)
  if (!config_path.empty()) config_options.config_file = config_path;
  G4_ASSIGN_OR_RETURN(convert::ExportConfig selected, convert::select_export_config(*w.ckpt_, config_options));
  w.config_ = std::move(selected.config);
  // The checkpoint's own prefix (Megatron-Bridge's text mode stores a conditional model without one).
  w.prefix_ = convert::language_prefix_or(*w.ckpt_, w.config_.form == gemma4::ModelForm::kConditional);
  // Each parameter's own shape as the config implies it (the plan's shapes; where it is stored is resolved
  // below, independently of the plan's storage slots).
  G4_ASSIGN_OR_RETURN(convert::ConversionPlan plan, convert::build_plan(w.config_, {}, w.prefix_));
  for (const convert::MegatronParam& p : plan.params) {
    w.shapes_[p.name] = p.shape;
    if (p.vocab_rows) w.vocab_rows_.insert(p.name);
  }
  if (const std::string extra = convert::key_beyond_layers(*w.ckpt_, w.prefix_, w.config_.text.num_hidden_layers); !extra.empty())
    return Status::mismatch(w.ckpt_->iteration_dir().string() + ": '" + extra + "' is a layer the config does not have (it has " +
                            std::to_string(w.config_.text.num_hidden_layers) + " layers)");
  return w;
}

Result<McoreWeights::Location> McoreWeights::locate(const dcp::Checkpoint& ckpt, const std::string& name) const {
  if (!name.starts_with(kLayers)) return Location{prefix_ + name, 0, 0};
  // decoder.layers.<l>.<rest>: attention lives in per-type stacks ranked among layers of the same type.
  const size_t dot = name.find('.', kLayers.size());
  const std::string digits = name.substr(kLayers.size(), dot == std::string::npos ? std::string::npos : dot - kLayers.size());
  const auto& layers = config_.text.layers;
  if (dot == std::string::npos || digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
      std::stoi(digits) >= static_cast<int>(layers.size()))
    return Status::invalid_argument("no layer in '" + name + "'");
  const int l = std::stoi(digits);
  std::string rest = name.substr(dot + 1);
  int64_t rank = l, stacked = static_cast<int64_t>(layers.size());
  if (rest.starts_with(kAttention)) {
    const bool full = layers[l].type == gemma4::LayerType::kFull;
    rest = (full ? "self_attention_global." : "self_attention_sliding.") + rest.substr(kAttention.size());
    auto same_type = [&](const gemma4::LayerSpec& s) { return s.type == layers[l].type; };
    rank = std::count_if(layers.begin(), layers.begin() + l, same_type);
    stacked = std::count_if(layers.begin(), layers.end(), same_type);
  }
  const std::string per_layer = prefix_ + std::string(kLayers) + std::to_string(l) + "." + rest;
  if (ckpt.find(per_layer)) return Location{per_layer, 0, 0};
  return Location{prefix_ + std::string(kLayers) + rest, rank, stacked};
}

Result<Shape> McoreWeights::shape(const std::string& name) const {
  auto known = shapes_.find(prefix_ + name);
  if (known == shapes_.end())
    return Status::not_found(ckpt_->iteration_dir().string() + ": '" + prefix_ + name + "' is not a parameter of the config's model");
  return known->second;
}

Result<McoreWeights::Param> McoreWeights::param(const std::string& name) const {
  const std::string where = ckpt_->iteration_dir().string();
  G4_ASSIGN_OR_RETURN(const Shape shape, this->shape(name));
  if (vocab_rows_.count(prefix_ + name)) return vocab_param(prefix_ + name, shape);
  G4_ASSIGN_OR_RETURN(const Location at, locate(*ckpt_, name));
  if (at.count == 0) {
    G4_ASSIGN_OR_RETURN(auto slab, ckpt_->read_slab(at.key, {}, {}, shape));
    return Param{std::move(slab), shape, at.key};
  }
  if (!ckpt_->find(at.key)) return Status::not_found(where + ": no stored tensor for '" + prefix_ + name + "'");
  // The stacked axis holds exactly the config's layers (of this type): a checkpoint with more is refused.
  G4_ASSIGN_OR_RETURN(auto slab, ckpt_->read_slab(at.key, {at.index}, {at.count}, shape));
  return Param{std::move(slab), shape, at.key};
}

Result<McoreWeights::Param> McoreWeights::vocab_param(const std::string& key, const Shape& shape) const {
  // Megatron-Bridge pads the vocabulary with zero rows: the forward reads the config's rows, the same values,
  // and refuses padding rows that are not zero (no semantics for them here; mcore2hf exports with a warning).
  G4_ASSIGN_OR_RETURN(const convert::VocabPadding padding, convert::scan_vocab_padding(*ckpt_, key, shape));
  if (padding.nonzero_rows > 0)
    return Status::not_supported(convert::describe_nonzero_padding(*ckpt_, key, padding) +
                                 " (the forward has no semantics for trained padding rows)");
  G4_ASSIGN_OR_RETURN(auto slab, ckpt_->read_slab(key, {}, {}, shape, true));
  return Param{std::move(slab), shape, key};
}

Result<WeightReader::Stored> McoreWeights::stored(const std::string& name) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  const std::shared_ptr<const dcp::Slab> slab = prm.slab;
  const dcp::Checkpoint* ckpt = ckpt_.get();  // outlives every tensor of a forward
  auto elements = [slab, ckpt](uint64_t first, uint64_t count) -> Result<Tensor> {
    const size_t es = dtype_size(slab->dtype);
    const uint64_t begin = first * es, end = (first + count) * es;
    for (const dcp::Slab::Part& part : slab->parts) {  // one part holds the range: a view of the mapped chunk
      if (part.begin > begin || part.begin + part.bytes.size() < end) continue;
      const std::span<const std::byte> bytes = part.bytes.subspan(begin - part.begin, end - begin);
      ckpt->will_need(bytes);  // read ahead in large requests, as HfWeights does
      auto storage = host_view(bytes.data(), bytes.size(), [slab, ckpt, bytes] { ckpt->release(bytes); });
      return Tensor(slab->dtype, 1, static_cast<int64_t>(count), std::move(storage));
    }
    Tensor t = Tensor::host(slab->dtype, 1, static_cast<int64_t>(count));  // spread over chunks: gathered
    G4_RETURN_IF_ERROR(slab->visit(begin, end, [&](std::span<const std::byte> src, uint64_t at) {
      std::copy(src.begin(), src.end(), t.raw() + at);
      ckpt->release(src);
      return Status();
    }));
    return t;
  };
  return Stored{prm.slab->dtype, prm.shape, prm.key, std::move(elements)};
}

}  // namespace g4::forward
