// The two files of a PEFT LoRA adapter directory, as PeftModel.save_pretrained names them.
#pragma once

namespace g4::lora {

inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";

}  // namespace g4::lora
