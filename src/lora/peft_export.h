// lora-export: a Megatron-Bridge LoRA checkpoint (adapter-only, or adapters beside base weights) as an exact
// HF PEFT adapter directory: adapter_config.json and adapter_model.safetensors in the layout current PEFT
// (>= 0.19.1) loads onto transformers' Gemma 4 (lora-peft.md A.3), written atomically.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/hf2mcore.h"
#include "lora/adapter_layout.h"
#include "lora/peft_files.h"
#include "runtime/output_policy.h"

namespace g4::lora {

struct PeftExportOptions {
  std::filesystem::path adapter;  // checkpoint root or iteration directory
  std::filesystem::path out;
  std::optional<std::filesystem::path> reference_hf;  // --reference-hf: the base's config.json (and base_model_name_or_path)
  std::optional<std::filesystem::path> config_file;   // --config
  std::optional<DType> dtype = DType::kF32;  // nullopt: keep the stored dtype; bf16 rounds
  LoraSettingsOptions settings;              // --rank / --alpha
  bool allow_inexact = false;                // export 26B linear_proj adapters anyway (with a warning)
  OutputPolicy output;                       // the adapter and reference are added to its protected inputs
  unsigned threads = 0;
  convert::ConvertProgress progress;
};

struct PeftExportSummary {
  std::filesystem::path iteration_dir;
  std::string family, form;
  size_t adapters = 0;  // Megatron adapters read
  size_t targets = 0;   // PEFT targets (modules and expert parameters)
  size_t tensors = 0;   // tensors written
  uint64_t bytes = 0;
  nlohmann::json adapter_config;
  std::vector<std::string> warnings;
};

Result<PeftExportSummary> export_peft_adapter(const PeftExportOptions& options);

// adapter_config.json for `layout` (Megatron-Bridge's build_adapter_config_dict fields, with our target_modules
// regex). Errors: dropout > 0 with expert targets (PEFT's ParamWrapper refuses dropout).
Result<nlohmann::json> adapter_config_json(const AdapterLayout& layout, const LoraSettings& settings, const std::string& base_model);

// Whether `dir` is empty or holds what an earlier lora-export wrote (so --force may replace it).
bool looks_like_peft_adapter_dir(const std::filesystem::path& dir);

}  // namespace g4::lora
