#include "runtime/json_parse.h"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace g4 {
namespace {

using json = nlohmann::json;

// Byte offset of the first bracket that opens level max_depth + 1, outside strings. Exact for valid JSON (a
// backslash in a string escapes exactly one character); on invalid JSON nlohmann stops at the first error,
// before any place where this scan and the parser could disagree about what is a string.
std::optional<size_t> first_too_deep(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

std::string without_exception_id(const json::exception& e) {
  std::string msg = e.what();
  if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);  // drop "[json.exception.parse_error.101] "
  return msg;
}

}  // namespace

Result<json> parse_json(std::string_view text, std::string_view where_view, const JsonLimits& limits) {
  const std::string where(where_view);
  if (auto at = first_too_deep(text, limits.max_depth))
    return Status::corruption(where + ": JSON nests deeper than " + std::to_string(limits.max_depth) + " levels (at byte " +
                              std::to_string(*at) + ")");
  try {
    if (!limits.reject_duplicate_keys) return json::parse(text.begin(), text.end());
    std::vector<std::set<std::string>> open_objects;  // keys seen so far in each object being parsed
    std::string duplicate;
    auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
      switch (event) {
        case json::parse_event_t::object_start: open_objects.emplace_back(); break;
        case json::parse_event_t::object_end: if (!open_objects.empty()) open_objects.pop_back(); break;
        case json::parse_event_t::key:
          if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
          break;
        default: break;
      }
      return true;
    };
    json j = json::parse(text.begin(), text.end(), on_event);
    if (!duplicate.empty()) return Status::corruption(where + ": duplicate key '" + duplicate + "'");
    return j;
  } catch (const json::exception& e) {
    return Status::corruption(where + ": not valid JSON: " + without_exception_id(e));
  }
}

}  // namespace g4
