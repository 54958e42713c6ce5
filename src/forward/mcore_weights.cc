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

void McoreWeights::convert(const Param& prm, uint64_t first, uint64_t count, float* out, const Precision& p) const {
  const DType dtype = prm.slab->dtype;
  const size_t es = dtype_size(dtype);
  (void)prm.slab->visit(first * es, (first + count) * es, [&](std::span<const std::byte> src, uint64_t at) {
    float* dst = out + at / es;
    const size_t n = src.size() / es;
    to_f32(dtype, src.data(), dst, n);
    if (p.bf16())  // the model holds bf16 parameters, also when the checkpoint stores f32
      for (size_t i = 0; i < n; ++i) dst[i] = round_to_bf16(dst[i]);
    ckpt_->release(src);
    return Status();
  });
}

Result<Mat> McoreWeights::matrix(const std::string& name, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  if (prm.shape.size() != 2) return Status::mismatch("'" + prm.key + "' is not 2-D per layer: " + shape_to_string(prm.shape));
  Mat m(prm.shape[0], prm.shape[1]);
  convert(prm, 0, m.v.size(), m.v.data(), p);
  return m;
}

Result<std::vector<float>> McoreWeights::vector(const std::string& name, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  std::vector<float> v(checked_numel(prm.shape).value_or(0));
  convert(prm, 0, v.size(), v.data(), p);
  return v;
}

Result<Mat> McoreWeights::slice(const std::string& name, int64_t e, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  if (prm.shape.size() != 3 || e < 0 || e >= prm.shape[0])
    return Status::mismatch("'" + prm.key + "': no expert " + std::to_string(e) + " in " + shape_to_string(prm.shape));
  Mat m(prm.shape[1], prm.shape[2]);
  convert(prm, static_cast<uint64_t>(e) * m.v.size(), m.v.size(), m.v.data(), p);
  return m;
}

Result<Mat> McoreWeights::rows(const std::string& name, const std::vector<int64_t>& ids, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  if (prm.shape.size() != 2) return Status::mismatch("'" + prm.key + "' is not 2-D");
  Mat m(static_cast<int64_t>(ids.size()), prm.shape[1]);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= prm.shape[0])
      return Status::invalid_argument("token id " + std::to_string(ids[i]) + " is outside '" + prm.key + "'");
    convert(prm, static_cast<uint64_t>(ids[i] * prm.shape[1]), static_cast<uint64_t>(prm.shape[1]), m.row(static_cast<int64_t>(i)), p);
  }
  return m;
}

Status McoreWeights::for_each_row_block(const std::string& name, int64_t block_rows, const Precision& p,
                                        const std::function<Status(int64_t, const Mat&)>& fn) const {
  G4_ASSIGN_OR_RETURN(Param prm, param(name));
  if (prm.shape.size() != 2) return Status::mismatch("'" + prm.key + "' is not 2-D");
  for (int64_t first = 0; first < prm.shape[0]; first += block_rows) {
    const int64_t n = std::min(block_rows, prm.shape[0] - first);
    Mat block(n, prm.shape[1]);
    convert(prm, static_cast<uint64_t>(first * prm.shape[1]), block.v.size(), block.v.data(), p);
    G4_RETURN_IF_ERROR(fn(first, block));
  }
  return {};
}

}  // namespace g4::forward
