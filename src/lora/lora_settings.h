// The LoRA settings a Megatron-Bridge PEFT run used, from the `peft:` section of its run_config.yaml (the
// serialised megatron.bridge.peft.lora.LoRA dataclass, lora-peft.md A.1), with the rank and alpha of the command
// line only where the checkpoint has no such section. What PEFT cannot express exactly (DoRA, canonical LoRA,
// SGLang's shared-outer expert adapters) is refused here, naming the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/status.h"

namespace g4::lora {

struct LoraSettings {
  std::string target_class;  // the section's _target_ ("megatron.bridge.peft.lora.LoRA" or "...VLMLoRA"); empty from the CLI
  int64_t dim = 32;          // the rank r (expert adapters may have another: normalize_moe_lora)
  double alpha = 32;         // scaling s = alpha / r
  std::vector<std::string> target_modules{"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};
  std::vector<std::string> exclude_modules;
  double dropout = 0.0;
  std::string dropout_position = "pre";
  bool normalize_moe_lora = false;     // expert adapters have rank dim / moe_router_topk (rank_pattern)
  bool share_expert_adapters = true;   // one adapter for all routed experts, stored in every expert slot
  std::optional<std::filesystem::path> pretrained_checkpoint;  // checkpoint.pretrained_checkpoint: the base
  std::filesystem::path source;        // the run_config.yaml read; empty when the settings come from the CLI
};

struct LoraSettingsOptions {
  std::optional<int64_t> rank;   // --rank: only when the checkpoint has no peft: section
  std::optional<double> alpha;   // --alpha: likewise (default: the rank, as MB's alpha = dim default)
};

// `iteration_dir`: the adapter checkpoint's iteration directory (run_config.yaml is read there, else in its
// parent, the checkpoint root). Errors: a DoRA / CanonicalLoRA / unknown _target_, experts_shared_outer_loras,
// a field of the wrong type, --rank/--alpha disagreeing with the section, neither a section nor --rank.
Result<LoraSettings> read_lora_settings(const std::filesystem::path& iteration_dir, const LoraSettingsOptions& options);

// Megatron-Bridge's ModuleMatcher: whether the module `name` (a full Megatron module name, e.g.
// "decoder.layers.3.self_attention.linear_qkv") is a target: its leaf name equals a target, or the full name
// matches one as MB's wildcard_match does ('*' any substring, the rest a Python regular expression, anchored). With
// no target_modules, every module that no exclude_modules entry matches that way.
bool is_target_module(const LoraSettings& settings, std::string_view name);

}  // namespace g4::lora
