// Read access to a Megatron-Core torch_dist checkpoint's parameters for the Megatron-semantics forward, by
// Megatron module name ("decoder.layers.3.self_attention.linear_qkv.weight"). Where a parameter is stored
// (stacked layer axis, per-type attention stacks, or per-layer keys) is resolved here from the checkpoint's own
// keys, independently of the converter's storage-layout code, so a layout bug there shows up as a divergence.
// What it must hold is not taken from the checkpoint: every parameter is read with the shape the config implies
// (the plan's), the stacked axis with the config's count of layers (of that type).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/dcp/checkpoint.h"
#include "forward/weight_reader.h"
#include "gemma4/config.h"

namespace g4::forward {

class McoreWeights final : public WeightReader {
 public:
  // The config comes from `config_path`, else the checkpoint's hf_config.json.
  static Result<McoreWeights> open(const std::filesystem::path& dir, const std::filesystem::path& config_path = {});

  const gemma4::ModelConfig& config() const override { return config_; }
  const std::filesystem::path& iteration_dir() const { return ckpt_->iteration_dir(); }

  // `name`: the Megatron module parameter without the language prefix.
  Result<Stored> stored(const std::string& name) const override;

  // Where a parameter `name` (no prefix; any name under decoder.layers.<l>., adapters' too) is stored, by the
  // rules the base weights are read with: the per-layer key when `ckpt` has it, else the stacked key (attention
  // in per-type stacks) at `index` of `count` layers. Unstacked names are their own key (count 0).
  struct Location {
    std::string key;
    int64_t index = 0, count = 0;  // count 0: not stacked
  };
  Result<Location> locate(const dcp::Checkpoint& ckpt, const std::string& name) const;
  // The parameter's own shape as the config implies it (no stacked axis).
  Result<Shape> shape(const std::string& name) const;
  const std::string& prefix() const { return prefix_; }

 private:
  struct Param {
    std::shared_ptr<const dcp::Slab> slab;
    Shape shape;
    std::string key;
  };
  // Reads `name` (no prefix) with exactly the shape the config implies, stacked axis included.
  Result<Param> param(const std::string& name) const;
  // A parameter whose dim 0 indexes the vocabulary: its first rows; padding rows that are not zero are refused.
  Result<Param> vocab_param(const std::string& key, const Shape& shape) const;

  gemma4::ModelConfig config_;
  std::shared_ptr<dcp::Checkpoint> ckpt_;
  std::string prefix_;  // "" or "language_model."
  std::map<std::string, Shape> shapes_;  // module name (with prefix) -> the parameter's shape per the config
  std::set<std::string> vocab_rows_;     // module names (with prefix) of vocabulary parameters (may be padded)
};

}  // namespace g4::forward
