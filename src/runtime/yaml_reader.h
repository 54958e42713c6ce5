// Reading untrusted YAML (Megatron-Bridge's run_config.yaml) into JSON values, with a kept parser (yaml-cpp)
// and PyYAML's scalar typing (YAML 1.1 SafeLoader resolvers), since PyYAML wrote the file and MB reads it
// back with it: plain `1e-06` is a string, `1.0e-06` a float, `yes`/`off` booleans, `~` null, `.inf`/`.nan`
// floats; quoted scalars stay strings. Bounded before anything recurses on the value: nesting depth, and the
// node count after alias expansion (an alias bomb expands exponentially from a few hundred bytes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace g4 {

struct YamlLimits {
  size_t max_bytes = 16u << 20;   // run_config.yaml is a few tens of KB
  int max_depth = 64;             // mappings and sequences open at once
  uint64_t max_nodes = 200'000;  // values after alias expansion (MB writes a few thousand)
};

// kCorruption "<where>:<line>: <why>" for malformed YAML, a tag safe_load would not accept, a duplicate or
// non-scalar key, more than one document, or a bound crossed. An empty document is null.
Result<nlohmann::json> parse_yaml(std::string_view text, std::string_view where, const YamlLimits& limits = {});

// The file through RegularFile (never blocks; size checked before reading), then parse_yaml.
Result<nlohmann::json> read_yaml_file(const std::filesystem::path& path, const YamlLimits& limits = {});

}  // namespace g4
