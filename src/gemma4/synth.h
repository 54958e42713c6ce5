// `g4convert synth`: a complete HF Gemma 4 checkpoint as transformers saves it, with deterministic
// random weights. Each element is a pure function of (seed, tensor name, element index), so any tensor
// can be regenerated in a test without the file, and chunks can be filled in parallel in any order.
// Norm weights, layer_scalar, router.scale and per_expert_scale are drawn away from 1.0 so that a
// converter or forward that drops or mis-wires them cannot pass by accident.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "gemma4/config.h"
#include "gemma4/hf_tensors.h"
#include "runtime/dtype.h"
#include "runtime/output_policy.h"
#include "runtime/thread_pool.h"

namespace g4::gemma4 {

struct SynthOptions {
  std::string preset;
  std::filesystem::path out;
  uint64_t seed = 0;
  int layers = 0;  // 0: the preset's depth
  DType dtype = DType::kBF16;
  ModelForm form = ModelForm::kCausal;
  bool with_shared_kv = false;
  OutputPolicy output;
  uint64_t max_shard_bytes = 5'000'000'000;
  ThreadPool* pool = nullptr;
  std::function<void(uint64_t bytes_done, uint64_t bytes_total, size_t tensors_done, size_t tensors_total)> on_progress;
};

struct SynthSummary {
  ModelConfig config;
  size_t tensors = 0;
  uint64_t bytes = 0;
  size_t shards = 0;
};

Result<SynthSummary> synth_checkpoint(const SynthOptions& options);

// The f32 value synth draws for element `index` of tensor `name` with `role` (before rounding to the dtype).
float synth_value(uint64_t seed, uint64_t name_hash, TensorRole role, uint64_t index);
uint64_t synth_name_hash(std::string_view name);

}  // namespace g4::gemma4
