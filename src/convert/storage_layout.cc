#include "convert/storage_layout.h"

#include "mappings/mapping_table.h"

namespace g4::convert {
namespace {

constexpr std::string_view kLayerTemplate = "decoder.layers.{l}.";

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) s += (k ? "." : "") + std::to_string(v[k]);
  return s;
}

}  // namespace

LayerKeys layer_keys_for(const gemma4::TextConfig& text) {
  for (const gemma4::LayerSpec& s : text.layers)
    if (s.mlp_width != text.intermediate_size) return LayerKeys::kPerLayer;
  return text.use_double_wide_mlp && text.num_kv_shared_layers > 0 ? LayerKeys::kPerLayer : LayerKeys::kStacked;
}

std::string module_name(std::string_view rule_name, int layer, std::string_view prefix) {
  std::string out(prefix);
  out += rule_name;
  if (size_t at = out.find("{l}"); at != std::string::npos) out.replace(at, 3, std::to_string(layer));
  return out;
}

StorageSlot storage_slot(std::string_view rule_name, int layer, const gemma4::TextConfig& text, LayerKeys keys,
                         std::string_view prefix) {
  StorageSlot slot;
  if (!rule_name.starts_with(kLayerTemplate)) {
    slot.key = std::string(prefix) + std::string(rule_name);
    return slot;
  }
  std::string rest(rule_name.substr(kLayerTemplate.size()));
  const gemma4::LayerSpec& spec = text.layers.at(static_cast<size_t>(layer));
  const bool attention = rest.starts_with(mappings::kPerTypeStackModule);
  int64_t type_rank = 0, type_count = 0;
  if (attention) {
    const bool full = spec.type == gemma4::LayerType::kFull;
    rest = std::string(full ? mappings::kGlobalStackModule : mappings::kSlidingStackModule) +
           rest.substr(mappings::kPerTypeStackModule.size());
    for (const gemma4::LayerSpec& s : text.layers) {
      if (s.type != spec.type) continue;
      if (s.index < layer) ++type_rank;
      ++type_count;
    }
  }
  if (keys == LayerKeys::kPerLayer) {
    slot.key = std::string(prefix) + "decoder.layers." + std::to_string(layer) + "." + rest;
    return slot;
  }
  slot.key = std::string(prefix) + "decoder.layers." + rest;
  slot.index = {attention ? type_rank : layer};
  slot.axes = {attention ? type_count : static_cast<int64_t>(text.layers.size())};
  return slot;
}

std::string sharded_object_key(const std::string& key, const std::vector<int64_t>& index, const std::vector<int64_t>& axes) {
  if (index.empty()) return key + "/shard_0_1";
  return key + "/shard_" + join(index) + "_" + join(axes);
}

}  // namespace g4::convert
