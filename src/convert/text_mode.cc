#include "convert/text_mode.h"

#include "gemma4/hf_tensors.h"

namespace g4::convert {

namespace {

bool has_prefix(std::string_view name, bool vision) {
  for (const std::string& p : gemma4::tower_prefixes(vision))
    if (name.starts_with(p)) return true;
  return false;
}

}  // namespace

gemma4::ModelConfig text_model_config(const gemma4::ModelConfig& config) {
  gemma4::ModelConfig text = config;
  text.form = gemma4::ModelForm::kCausal;
  text.vision_config = text.audio_config = nullptr;
  text.wrapper_fields = nlohmann::json::object();
  return text;
}

bool is_tower_tensor(std::string_view name) { return has_prefix(name, true) || has_prefix(name, false); }

Result<std::vector<std::string>> towers_from_reference(const gemma4::ModelConfig& config,
                                                       const std::vector<std::pair<std::string, Shape>>& checkpoint_towers,
                                                       const SafetensorsSet* reference, const std::string& where) {
  std::vector<std::string> out;
  if (config.form != gemma4::ModelForm::kConditional) return out;
  for (bool vision : {true, false}) {
    if ((vision ? config.vision_config : config.audio_config).is_null()) continue;
    bool stored = false;
    for (const auto& [name, shape] : checkpoint_towers) stored |= has_prefix(name, vision);
    if (stored) continue;
    size_t found = 0;
    if (reference)
      for (const auto& [name, entry] : reference->tensors())
        if (has_prefix(name, vision)) out.push_back(name), ++found;
    if (found) continue;
    const std::string tower = vision ? "vision" : "audio";
    return Status::not_found(where + ": the config declares a" + std::string(vision ? " " : "n ") + tower + " tower (" + tower +
                             "_config) but the checkpoint has no " + gemma4::tower_prefixes(vision)[0].substr(6) + "* tensors (a Megatron-Bridge "
                             "text-mode import holds only the language model)" +
                             (reference ? " and neither has --reference-hf" : "; pass --reference-hf DIR with the original HF checkpoint"));
  }
  return out;
}

}  // namespace g4::convert
