// Which HF config a command that reads a Megatron checkpoint uses (mcore2hf, forward --mcore, verify, inspect),
// chosen in one place:
//   1. --config FILE (an HF config.json) or --reference-hf DIR (its config.json), when given: it wins;
//   2. the checkpoint's own description: hf_config.json (g4convert writes it), else run_config.yaml (the
//      Megatron-Bridge provider and its fields, provider_config.h; Megatron-Bridge writes no hf_config.json).
// When both exist, their architecture fields must agree (one line naming the first that does not, with both
// values). What the checkpoint's own description cannot say is reported and, when given, taken from 1.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/dcp/checkpoint.h"
#include "gemma4/config.h"

namespace g4::convert {

struct ExportConfigOptions {
  std::optional<std::filesystem::path> config_file;   // --config: an HF config.json
  std::optional<std::filesystem::path> reference_hf;  // --reference-hf: a directory with config.json
  // inspect checks the tensors against the given config whatever the checkpoint says: a disagreement is
  // returned in ExportConfig::disagreement instead of failing.
  bool disagreement_is_reported = false;
};

struct ExportConfig {
  gemma4::ModelConfig config;
  std::string source;                 // the file the config came from
  std::vector<std::string> warnings;  // unrecoverable fields written as defaults, fields taken from shapes
  std::string disagreement;           // with disagreement_is_reported: the error select_export_config would give
};

Result<ExportConfig> select_export_config(const dcp::Checkpoint& ckpt, const ExportConfigOptions& options);

// The first architecture field (text config, form, tower configs; token ids, dtype and initializer_range
// excluded) on which `a` and `b` differ, as "text_config.hidden_size: 64 vs 128"; empty when they agree.
// `unstated`: fields one side only defaulted (a run_config.yaml does not record them), not compared.
std::string first_architecture_difference(const gemma4::ModelConfig& a, const gemma4::ModelConfig& b,
                                          const std::vector<std::string>& unstated = {});

inline constexpr const char* kRunConfigFile = "run_config.yaml";

}  // namespace g4::convert
