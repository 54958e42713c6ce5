#include "convert/mcore_keys.h"

#include <cctype>

#include "mappings/mapping_table.h"

namespace g4::convert {

std::vector<std::pair<std::string, Shape>> tower_tensors(const dcp::Checkpoint& ckpt) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [key, entry] : ckpt.metadata().tensors)
    for (std::string_view prefix : mappings::kTowerPrefixes)
      if (key.starts_with(prefix)) out.push_back({std::string(mappings::kTowerHfRoot) + key, entry.shape});
  return out;
}

std::optional<std::string> language_prefix(const dcp::Checkpoint& ckpt) {
  const std::string vl(mappings::kVlLanguagePrefix);
  if (ckpt.find(vl + "embedding.word_embeddings.weight")) return vl;
  if (ckpt.find("embedding.word_embeddings.weight")) return std::string();
  for (const auto& [key, entry] : ckpt.metadata().tensors) {
    if (key.starts_with(vl + "decoder.")) return vl;
    if (key.starts_with("decoder.")) return std::string();
  }
  return std::nullopt;
}

std::string language_prefix_or(const dcp::Checkpoint& ckpt, bool conditional) {
  return language_prefix(ckpt).value_or(conditional ? std::string(mappings::kVlLanguagePrefix) : std::string());
}

std::string fused_weights_marker(const dcp::Checkpoint& ckpt) {
  for (const auto& [key, entry] : ckpt.metadata().tensors)
    if (key.find("pffl_weight") != std::string::npos) return key;
  return {};
}

std::string key_beyond_layers(const dcp::Checkpoint& ckpt, const std::string& prefix, int64_t layers) {
  const std::string head = prefix + "decoder.layers.";
  for (const auto& [key, entry] : ckpt.metadata().tensors) {
    if (!key.starts_with(head)) continue;
    size_t end = head.size();
    int64_t layer = 0;
    for (; end < key.size() && std::isdigit(static_cast<unsigned char>(key[end])); ++end)
      layer = std::min<int64_t>(layer * 10 + (key[end] - '0'), layers + 1);  // capped: no overflow
    if (end > head.size() && end < key.size() && key[end] == '.' && layer >= layers) return key;
  }
  return {};
}

}  // namespace g4::convert
