// Where a Megatron parameter lives in a torch_dist checkpoint (megatron-bridge-layout.md §4.2,
// megatron-checkpoint-format.md §4.2-4.7): layer parameters of homogeneous models are stacked under
// "decoder.layers.<name>" with a leading layer axis; Gemma 4's attention parameters go to two per-type stacks,
// "self_attention_sliding" and "self_attention_global", indexed by the layer's rank among layers of its type;
// heterogeneous models (E2B's double-wide MLP) keep per-layer keys "decoder.layers.<i>.<name>" with no axis.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/config.h"

namespace g4::convert {

enum class LayerKeys : uint8_t { kStacked, kPerLayer };

// Megatron-Bridge sets hetereogenous_dist_checkpoint (per-layer keys) exactly when use_double_wide_mlp is on
// and the double width actually changes a layer's shape.
LayerKeys layer_keys_for(const gemma4::TextConfig& text);

struct StorageSlot {
  std::string key;                 // DCP key
  std::vector<int64_t> index;      // position on the prepended axes (empty when none)
  std::vector<int64_t> axes;       // sizes of the prepended axes (empty when none)
};

// `rule_name` is a table name with "{l}" (layer rules) or without (model rules); `prefix` is "" or
// "language_model.". `layer` is ignored for model rules.
StorageSlot storage_slot(std::string_view rule_name, int layer, const gemma4::TextConfig& text, LayerKeys keys,
                         std::string_view prefix);

// The module (state-dict) name of a rule at a layer: "{l}" replaced by the index.
std::string module_name(std::string_view rule_name, int layer, std::string_view prefix);

// ShardedObject.unique_key: "<key>/shard_<index joined by .>_<axes joined by .>"; unstacked objects use 0 / 1.
std::string sharded_object_key(const std::string& key, const std::vector<int64_t>& index, const std::vector<int64_t>& axes);

}  // namespace g4::convert
