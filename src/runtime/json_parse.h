// Parsing untrusted JSON, the one way every reader of the tool does it (config.json, the safetensors index and
// headers, forward inputs). nlohmann parses iteratively, but copying, comparing or dumping a value recurses once
// per level, so a 200 KB file nested 100k deep would overflow the stack later, far from the parse. The depth is
// therefore bounded here, before nlohmann sees the text; no file the tool reads needs more than a few levels.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace g4 {

inline constexpr int kMaxJsonDepth = 64;  // arrays and objects open at once

struct JsonLimits {
  int max_depth = kMaxJsonDepth;
  // Refuse an object that repeats a key (nlohmann keeps the last silently, so a hostile safetensors header
  // could hide a tensor behind a second entry of the same name).
  bool reject_duplicate_keys = false;
};

// kCorruption naming `where` ("<where>: not valid JSON: ...", "<where>: JSON nests deeper than 64 levels ...",
// "<where>: duplicate key 'x'").
Result<nlohmann::json> parse_json(std::string_view text, std::string_view where, const JsonLimits& limits = {});

}  // namespace g4
