// Released Gemma 4 text configurations (gemma4-hf.md §1.4) and tiny counterparts with the same structure
// (every kind of layer and tensor, a few kilobytes), plus recognising which structure a config has.
#pragma once

#include <string>
#include <vector>

#include "gemma4/config.h"

namespace g4::gemma4 {

struct Preset {
  std::string name;         // "e2b", "tiny-e2b", ...
  std::string structure;    // "e2b", "e4b", "26b-a4b", "31b"
  std::string description;
  TextConfig text;          // schedule derived
};

const std::vector<Preset>& all_presets();
const Preset* find_preset(std::string_view name);

// Builds a preset's config with `layers` decoder layers (0 keeps the preset's count): layer_types is cut to
// that length with the last layer forced full, and num_kv_shared_layers is scaled and reduced until every
// shared layer has a source of its type.
Result<TextConfig> preset_with_layers(const Preset& preset, int layers);

// The structure family of a config, decided from the config alone (pitfalls.md P7):
// "26b-a4b" (MoE), "e2b" (PLE + double-wide MLP on KV-shared layers), "e4b" (PLE),
// "31b" (dense, K=V), or "custom".
std::string structure_of(const TextConfig& text);

// "e2b" when every architecture field equals a preset's; "e2b (4 of 35 layers)" when only the depth differs;
// otherwise "<structure>-like".
std::string identify_variant(const TextConfig& text);

}  // namespace g4::gemma4
