// Test helpers for LoRA: fp32 tensors written as safetensors with our writer, PEFT adapter directories as
// peft 0.21.2 saves them, and small HF base checkpoints.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/dtype.h"
#include "runtime/safetensors_writer.h"
#include "runtime/tensor_info.h"

namespace g4::testing {

struct FloatTensor {
  std::string name;
  Shape shape;
  std::vector<float> values;  // written converted to `dtype`
  DType dtype = DType::kF32;
};

// Writes `tensors` (in this order) as one safetensors file.
void write_float_tensors(const std::filesystem::path& file, const std::vector<FloatTensor>& tensors);

// An adapter_config.json with peft 0.21.2's defaults for the fields lora-merge reads, r and lora_alpha set.
nlohmann::json peft_config(int64_t r, double alpha);
// Writes adapter_config.json and adapter_model.safetensors into `dir` (created).
void write_peft_adapter(const std::filesystem::path& dir, const nlohmann::json& config, const std::vector<FloatTensor>& tensors);

// Deterministic, distinct values: v(seed, i) in roughly [-1, 1].
std::vector<float> test_values(uint64_t seed, size_t n, float scale = 1.0f);

}  // namespace g4::testing
