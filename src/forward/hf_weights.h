// An HF checkpoint's text-decoder weights for the forward (weight_reader.h), straight from the mmap'd safetensors:
// every tensor is a view of its mapped bytes in the stored type. Nothing is cached.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "forward/weight_reader.h"
#include "gemma4/config.h"
#include "runtime/safetensors_set.h"

namespace g4::forward {

class HfWeights final : public WeightReader {
 public:
  // Opens DIR and checks that every required text tensor is present with the shape the config implies.
  static Result<HfWeights> open(const std::filesystem::path& dir);

  const gemma4::ModelConfig& config() const override { return config_; }
  const std::string& prefix() const { return prefix_; }  // "model." or "model.language_model."
  // `name` is relative to the text prefix ("layers.3.mlp.up_proj.weight").
  Result<Stored> stored(const std::string& name) const override;

 private:
  HfWeights(gemma4::ModelConfig config, SafetensorsSet set);

  gemma4::ModelConfig config_;
  SafetensorsSet set_;
  std::string prefix_;
};

}  // namespace g4::forward
