// `g4convert inspect` for HF checkpoints: recognises the variant and form, derives the layer schedule,
// and lists every problem a converter or loader would trip on, collect-all style (it never stops at the
// first): structural safetensors problems (unreadable headers, missing shards, bad entries, offsets that
// overlap or run past the file), missing, unexpected or duplicate keys, shapes that contradict the config,
// non-float weights, index inconsistencies, and with `scan` NaN/Inf values and an untied lm_head that differs
// from the embedding. Only input that leaves nothing to check (no or corrupt config.json, no safetensors, an
// unreadable index) is an error Status.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/config.h"
#include "runtime/thread_pool.h"

namespace g4 {

struct InspectProblem {
  std::string kind;  // safetensors | missing | unexpected | duplicate | shape | dtype | index | non-finite | tied-head | tower
  std::string message;
};

struct InspectReport {
  std::string format = "hf";  // "hf" or "megatron"
  std::filesystem::path dir;
  gemma4::ModelConfig config;
  std::string variant;
  std::string structure;
  size_t files = 0;
  size_t tensors = 0;
  size_t text_tensors = 0;
  size_t tower_tensors = 0;
  size_t redundant_shared_kv = 0;  // K/V of KV-shared layers present (older E-series uploads)
  uint64_t bytes = 0;
  std::map<std::string, size_t> dtypes;
  bool scanned = false;
  std::vector<InspectProblem> problems;
  // Megatron torch_dist checkpoints only.
  std::filesystem::path iteration_dir;
  std::string written_by;      // "g4convert", "Megatron-Bridge" (run_config.yaml) or "Megatron"
  std::string layer_keys;      // "stacked" or "per-layer"
  size_t extra_state_objects = 0;
  size_t chunks = 0;
};

struct InspectOptions {
  bool scan = false;
  ThreadPool* pool = nullptr;
};

Result<InspectReport> inspect_hf(const std::filesystem::path& dir, const InspectOptions& options);

// A Megatron-Core torch_dist checkpoint (root or iteration directory) checked against its Gemma 4 config
// (hf_config.json, or `config_path`): every mapped key present with the config's shape, chunks that tile each
// tensor, the `_extra_state` objects Megatron-Bridge's loader requests, no fused pre-July weights, the V slot of
// K=V layers equal to K, and with --scan no NaN/Inf.
Result<InspectReport> inspect_mcore(const std::filesystem::path& dir, const InspectOptions& options,
                                    const std::filesystem::path& config_path = {});
// True when `dir` holds config.json (HF); false for anything else (checked as Megatron).
bool is_hf_checkpoint(const std::filesystem::path& dir);

nlohmann::json inspect_report_json(const InspectReport& report);
std::string inspect_report_text(const InspectReport& report);
// One row per run of identical consecutive layers: "0-4  sliding  hd 256  kv 8  ...".
std::vector<std::string> schedule_lines(const gemma4::TextConfig& text);

}  // namespace g4
