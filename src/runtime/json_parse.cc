#include "runtime/json_parse.h"

#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace g4 {
namespace {

using json = nlohmann::json;

// Byte offset of the first bracket that opens level max_depth + 1, outside strings. Exact for valid JSON (a
// quote preceded by an odd number of backslashes is escaped); on invalid JSON nlohmann stops at the first error,
// before any place where this scan and the parser could disagree about what is a string. String contents are
// skipped with memchr, so the scan costs a small fraction of the parse.
std::optional<size_t> first_too_deep(std::string_view text, int max_depth) {
  const char* const begin = text.data();
  const char* const end = begin + text.size();
  int depth = 0;
  for (const char* p = begin; p < end; ++p) {
    switch (*p) {
      case '"':
        for (;;) {  // to the closing quote
          p = static_cast<const char*>(std::memchr(p + 1, '"', static_cast<size_t>(end - p - 1)));
          if (!p) return std::nullopt;
          size_t backslashes = 0;
          while (p - backslashes > begin && p[-1 - static_cast<ptrdiff_t>(backslashes)] == '\\') ++backslashes;
          if (backslashes % 2 == 0) break;
        }
        break;
      case '[': case '{':
        if (++depth > max_depth) return static_cast<size_t>(p - begin);
        break;
      case ']': case '}': --depth; break;
      default: break;
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
