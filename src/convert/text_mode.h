// Megatron-Bridge's text mode (GEMMA4_CONVERSION_MODE=text, megatron-bridge-observed.md): a
// Gemma4ForConditionalGeneration imported as a plain GPTModel, its language model under no prefix and no tower
// tensors. The prefix is detected from the checkpoint (language_prefix in mcore_keys.h); this supplies what
// such a checkpoint lacks on export: the towers, from the reference HF checkpoint, byte for byte.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gemma4/config.h"
#include "runtime/safetensors_set.h"

namespace g4::convert {

// The reference tensors of every tower the conditional `config` declares (vision_config, audio_config) of which
// `checkpoint_towers` (HF names) holds none. A declared tower that neither has is an error naming the tower and
// `where` (the iteration directory). Causal configs have no towers: empty.
Result<std::vector<std::string>> towers_from_reference(const gemma4::ModelConfig& config,
                                                       const std::vector<std::pair<std::string, Shape>>& checkpoint_towers,
                                                       const SafetensorsSet* reference, const std::string& where);

// The model Megatron-Bridge's text mode builds its provider from (text_config alone): `config` as the causal
// form, without towers or wrapper fields. A causal config is returned unchanged.
gemma4::ModelConfig text_model_config(const gemma4::ModelConfig& config);

// Whether `name` (an HF name) is a vision or audio tower tensor.
bool is_tower_tensor(std::string_view name);

}  // namespace g4::convert
