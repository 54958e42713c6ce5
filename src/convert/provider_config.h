// The HF config.json of a Megatron checkpoint that has no hf_config.json (Megatron-Bridge writes none), rebuilt
// from its run_config.yaml: the model section names the Megatron-Bridge provider (`_target_`) and its fields,
// read the way MB's Gemma4Bridge.megatron_to_hf_config reads them (megatron-bridge-layout.md §3, §4.3), plus
// the tensor shapes for a provider field the file leaves out. Both MB 0.6.2's field names and values (dense
// `window_attn_skip_freq` booleans, MoE `(n_sliding, n_full)` patterns, `(w-1, 0)` windows, HF config nodes in
// either of the forms MB serialises them) and ours are read.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/dcp/dcp_metadata.h"
#include "runtime/status.h"

namespace g4::convert {

struct RecoveredConfig {
  nlohmann::json hf;                       // a config.json for gemma4::parse_config_json
  std::vector<std::string> unrecoverable;  // HF fields neither the provider nor its HF nodes record
  std::vector<std::string> from_shapes;    // provider fields absent from the file, taken from tensor shapes
};

// `run_config` is the parsed run_config.yaml, `file` names it in messages, `tensors` the checkpoint's DCP
// metadata. Errors name the file and the model field ("run_config.yaml: model.window_size: ...").
Result<RecoveredConfig> hf_config_from_run_config(const nlohmann::json& run_config, const std::string& file,
                                                  const dcp::Metadata& tensors);

// The Megatron-Bridge provider classes run_config.yaml can name (class name, without the module).
bool is_gemma4_provider_class(const std::string& class_name);

}  // namespace g4::convert
