// verify --adapter: the two sides of a LoRA comparison. The Megatron side applies Megatron-Bridge's adapters,
// read straight from the checkpoint's adapter keys (forward/mcore_adapters.h), on its base checkpoint; the HF
// side applies a PEFT adapter the way PEFT does: the one lora-export writes for that checkpoint (into a private
// scratch directory), or a PEFT directory given directly, checked against the Megatron checkpoint holding
// the same adapters.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "forward/mcore_adapters.h"
#include "lora/lora_settings.h"
#include "lora/peft_adapter.h"
#include "runtime/output_dir.h"

namespace g4::verify {

// PEFT's deltas for the HF-semantics forward, by full HF tensor name.
class PeftSource final : public forward::AdapterSource {
 public:
  explicit PeftSource(lora::PeftAdapter adapter) : adapter_(std::move(adapter)) {}
  Result<std::shared_ptr<const forward::LowRank>> delta(const std::string& tensor) const override;
  const lora::PeftAdapter& adapter() const { return adapter_; }

 private:
  lora::PeftAdapter adapter_;
};

struct AdapterVerifyOptions {
  std::filesystem::path adapter;  // a Megatron-Bridge LoRA checkpoint (adapter-only or full), or a PEFT adapter directory
  std::filesystem::path mcore;    // the Megatron base; with a PEFT --adapter: the Megatron checkpoint holding its adapters
  std::filesystem::path hf;       // the HF base (the export's reference config)
  std::filesystem::path config;   // --config: HF config.json for Megatron checkpoints without hf_config.json
  lora::LoraSettingsOptions settings;  // --rank / --alpha where run_config.yaml has no peft: section
  bool allow_inexact = false;     // export 26B linear_proj adapters anyway (verify then shows their divergence)
};

struct AdapterSides {
  std::filesystem::path megatron_adapters;  // the checkpoint the Megatron adapters are read from
  std::filesystem::path megatron_base;      // the checkpoint the Megatron base weights are read from
  std::string base_reason;                  // why that base: "--mcore", "beside the adapters", "run_config.yaml ..."
  std::filesystem::path peft_dir;           // the PEFT adapter read (a scratch directory when exported)
  std::shared_ptr<forward::McoreWeights> base;
  std::shared_ptr<forward::McoreAdapters> megatron;
  std::shared_ptr<PeftSource> peft;
  std::vector<std::string> warnings;        // the export's
  std::shared_ptr<OutputDir> scratch;       // holds the exported adapter while the sides live
};

// Errors: a PEFT --adapter without --mcore; an adapter-only checkpoint with neither --mcore nor
// checkpoint.pretrained_checkpoint; everything the settings reader, the adapter readers and the export refuse.
Result<AdapterSides> open_adapter_sides(const AdapterVerifyOptions& options);

}  // namespace g4::verify
