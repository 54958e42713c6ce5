#include "runtime/yaml_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include "runtime/text_file.h"

namespace g4 {
namespace {

using nlohmann::json;

constexpr const char* kCoreTag = "tag:yaml.org,2002:";

struct YamlError {
  int line;  // 1-based; 0 when unknown
  std::string message;
};

[[noreturn]] void fail(const YAML::Mark& mark, std::string message) {
  throw YamlError{mark.is_null() ? 0 : mark.line + 1, std::move(message)};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string without_underscores(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '_') out += c;
  return out;
}

// PyYAML's bool words (YAML 1.1).
std::optional<bool> yaml11_bool(std::string_view s) {
  for (const char* w : {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
    if (s == w) return true;
  for (const char* w : {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
    if (s == w) return false;
  return std::nullopt;
}

bool yaml11_null(std::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// "digits:[0-5]?digit(:...)+" after the sign, the sexagesimal form PyYAML still reads.
bool sexagesimal_groups(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0 || s[0] == '0') return false;
  for (size_t i = 0; i < colon; ++i)
    if (!is_digit(s[i]) && s[i] != '_') return false;
  std::string_view rest = s.substr(colon);
  while (!rest.empty()) {
    if (rest[0] != ':') return false;
    size_t n = 1;
    while (n < rest.size() && is_digit(rest[n])) ++n;
    if (n == 1 || n > 3 || (n == 3 && rest[1] > '5')) return false;
    rest.remove_prefix(n);
  }
  return true;
}

// An integer in PyYAML's resolver forms: decimal, 0b, 0 (octal), 0x, sexagesimal; '_' separators.
// nullopt when `s` is not one; an error when it is one that does not fit 64 bits.
std::optional<json> yaml11_int(std::string_view s, const YAML::Mark& mark) {
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) negative = body[0] == '-', body.remove_prefix(1);
  if (body.empty()) return std::nullopt;
  auto all_of = [](std::string_view t, auto pred) {
    for (char c : t)
      if (!pred(c) && c != '_') return false;
    return true;
  };
  int base = 10;
  std::string_view digits = body;
  if (body.size() > 2 && body[0] == '0' && body[1] == 'b' && all_of(body.substr(2), [](char c) { return c == '0' || c == '1'; })) {
    base = 2, digits = body.substr(2);
  } else if (body.size() > 2 && body[0] == '0' && body[1] == 'x' &&
             all_of(body.substr(2), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    base = 16, digits = body.substr(2);
  } else if (body.size() > 1 && body[0] == '0' && all_of(body.substr(1), [](char c) { return c >= '0' && c <= '7'; })) {
    base = 8, digits = body.substr(1);
  } else if (body == "0" || (body[0] >= '1' && body[0] <= '9' && all_of(body, is_digit))) {
    base = 10;
  } else if (sexagesimal_groups(body)) {
    base = 60;
  } else {
    return std::nullopt;
  }
  const std::string clean = without_underscores(digits);
  uint64_t magnitude = 0;
  bool fits = !clean.empty();
  if (base == 60) {
    std::stringstream groups(clean);
    std::string group;
    while (fits && std::getline(groups, group, ':')) {
      const uint64_t g = std::stoull(group);
      fits = magnitude <= (std::numeric_limits<uint64_t>::max() - g) / 60;
      magnitude = magnitude * 60 + g;
    }
  } else if (fits) {
    auto [end, ec] = std::from_chars(clean.data(), clean.data() + clean.size(), magnitude, base);
    fits = ec == std::errc() && end == clean.data() + clean.size();
  }
  if (!negative && fits) {
    if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return json(static_cast<int64_t>(magnitude));
    return json(magnitude);
  }
  if (negative && fits && magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
    return json(magnitude == 0 ? int64_t{0} : static_cast<int64_t>(-static_cast<int64_t>(magnitude - 1) - 1));
  fail(mark, "integer '" + std::string(s) + "' does not fit in 64 bits");
}

// A float in PyYAML's resolver forms: needs a dot ("1e-06" is a string, "1.0e-06" a float), an exponent
// needs its sign, '.inf'/'.nan' in three spellings.
std::optional<double> yaml11_float(std::string_view s) {
  std::string_view body = s;
  bool negative = false;
  const bool signed_ = !body.empty() && (body[0] == '-' || body[0] == '+');
  if (signed_) negative = body[0] == '-', body.remove_prefix(1);
  for (const char* w : {".inf", ".Inf", ".INF"})
    if (body == w) return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (!signed_)
    for (const char* w : {".nan", ".NaN", ".NAN"})
      if (body == w) return std::numeric_limits<double>::quiet_NaN();
  size_t i = 0;
  const bool leading_digit = i < body.size() && is_digit(body[i]);
  if (!leading_digit && signed_) return std::nullopt;  // "\.[0-9_]+" has no sign
  while (i < body.size() && (is_digit(body[i]) || body[i] == '_')) ++i;
  if (i == body.size() || body[i] != '.') return std::nullopt;  // sexagesimal floats: not worth supporting
  ++i;
  const size_t fraction = i;
  while (i < body.size() && (is_digit(body[i]) || body[i] == '_')) ++i;
  if (!leading_digit && i == fraction) return std::nullopt;  // "." alone
  if (i < body.size()) {
    if (body[i] != 'e' && body[i] != 'E') return std::nullopt;
    ++i;
    if (i == body.size() || (body[i] != '-' && body[i] != '+')) return std::nullopt;
    ++i;
    const size_t exp = i;
    while (i < body.size() && is_digit(body[i])) ++i;
    if (i == exp || i != body.size()) return std::nullopt;
  }
  std::string clean = without_underscores(body);
  if (clean.front() == '.') clean.insert(0, "0");
  double v = 0;
  auto [end, ec] = std::from_chars(clean.data(), clean.data() + clean.size(), v);
  if (end != clean.data() + clean.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) v = std::numeric_limits<double>::infinity();  // Python: float('1e999') is inf
  return negative ? -v : v;
}

// A plain scalar as PyYAML's SafeLoader types it. Timestamps stay strings (JSON has no date).
json resolve_plain(const std::string& s, const YAML::Mark& mark) {
  if (yaml11_null(s)) return nullptr;
  if (auto b = yaml11_bool(s)) return *b;
  if (auto f = yaml11_float(s)) return *f;
  if (auto i = yaml11_int(s, mark)) return *i;
  return s;
}

json resolve_tagged(const std::string& tag, const std::string& s, const YAML::Mark& mark) {
  if (tag == "?") return resolve_plain(s, mark);
  if (tag == "!") return s;  // quoted: always a string
  if (!tag.starts_with(kCoreTag)) fail(mark, "tag '" + tag + "' is not one yaml.safe_load accepts");
  const std::string name = tag.substr(std::char_traits<char>::length(kCoreTag));
  if (name == "str") return s;
  if (name == "null") return nullptr;
  if (name == "bool") {
    if (auto b = yaml11_bool(s)) return *b;
    fail(mark, "'" + s + "' is not a !!bool");
  }
  if (name == "int") {
    if (auto i = yaml11_int(s, mark)) return *i;
    fail(mark, "'" + s + "' is not a !!int");
  }
  if (name == "float") {
    if (auto f = yaml11_float(s)) return *f;
    if (auto i = yaml11_int(s, mark); i && i->is_number_integer()) return i->get<double>();
    std::string clean = without_underscores(s);  // !!float takes what Python's float() takes, e.g. 1e-06
    double v = 0;
    auto [end, ec] = std::from_chars(clean.data(), clean.data() + clean.size(), v);
    if (ec == std::errc() && end == clean.data() + clean.size() && !clean.empty()) return v;
    fail(mark, "'" + s + "' is not a !!float");
  }
  fail(mark, "tag '!!" + name + "' is not supported here (run_config.yaml is written by yaml.safe_dump)");
}

void check_collection_tag(const std::string& tag, bool sequence, const YAML::Mark& mark) {
  if (tag == "?" || tag == "!") return;
  if (tag == std::string(kCoreTag) + (sequence ? "seq" : "map")) return;
  if (sequence && tag == std::string(kCoreTag) + "python/tuple") return;  // PyYAML's full dumper: a list here
  // safe_dump writes a Python set (MB's LoRA params_to_save) as a !!set mapping of keys to null; safe_load reads it
  // back as a set. Kept as that mapping: the keys are the members.
  if (!sequence && tag == std::string(kCoreTag) + "set") return;
  fail(mark, "tag '" + tag + "' is not one yaml.safe_load accepts" +
                 (tag.find("python/") != std::string::npos ? " (it would run code to construct a Python object)" : ""));
}

// Builds the JSON value from yaml-cpp's events, one frame per open mapping or sequence.
class JsonBuilder : public YAML::EventHandler {
 public:
  explicit JsonBuilder(const YamlLimits& limits) : limits_(limits) {}

  json take() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (awaiting_key()) return set_key("null", mark);
    add(nullptr, 1, 0, anchor, mark);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    if (awaiting_key()) {
      if (tag == "?" && value == "<<") fail(mark, "merge keys (<<) are not supported");
      (void)resolve_tagged(tag, value, mark);  // the key's tag must be valid too
      return set_key(value, mark);
    }
    add(resolve_tagged(tag, value, mark), 1, 0, anchor, mark);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) fail(mark, "alias to an anchor that is not complete here");
    if (awaiting_key()) {
      if (!it->second.value.is_string()) fail(mark, "a mapping key must be a scalar string");
      return set_key(it->second.value.get<std::string>(), mark);
    }
    add(it->second.value, it->second.nodes, it->second.height, 0, mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, tag, anchor, /*sequence=*/true);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, tag, anchor, /*sequence=*/false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    json value;
    YAML::anchor_t anchor = 0;
    YAML::Mark mark;
    uint64_t nodes_before = 0;
    int height = 1;
    std::optional<std::string> key;  // maps: the key whose value comes next
    int key_line = 0;
  };
  struct Anchored {
    json value;
    uint64_t nodes = 0;
    int height = 0;
  };

  bool awaiting_key() const { return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key; }

  void set_key(const std::string& key, const YAML::Mark& mark) {
    Frame& f = stack_.back();
    if (f.value.contains(key)) fail(mark, "duplicate key '" + key + "'");
    f.key = key;
    f.key_line = mark.line;
  }

  void count(uint64_t nodes, const YAML::Mark& mark) {
    nodes_ += nodes;
    if (nodes_ > limits_.max_nodes)
      fail(mark, "more than " + std::to_string(limits_.max_nodes) + " values after expanding aliases");
  }

  void open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, bool sequence) {
    if (awaiting_key()) fail(mark, "a mapping key must be a scalar");
    check_collection_tag(tag, sequence, mark);
    if (static_cast<int>(stack_.size()) + 1 > limits_.max_depth)
      fail(mark, "YAML nests deeper than " + std::to_string(limits_.max_depth) + " levels");
    count(1, mark);
    Frame f;
    f.value = sequence ? json::array() : json::object();
    f.anchor = anchor;
    f.mark = mark;
    f.nodes_before = nodes_ - 1;
    stack_.push_back(std::move(f));
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.value.is_object() && f.key) fail(f.mark, "mapping ends after key '" + *f.key + "' with no value");
    const uint64_t nodes = nodes_ - f.nodes_before;
    nodes_ = f.nodes_before;  // add() counts them again for the parent
    add(std::move(f.value), nodes, f.height, f.anchor, f.mark);
  }

  void add(json value, uint64_t nodes, int height, YAML::anchor_t anchor, const YAML::Mark& mark) {
    count(nodes, mark);
    if (static_cast<int>(stack_.size()) + height > limits_.max_depth)
      fail(mark, "YAML nests deeper than " + std::to_string(limits_.max_depth) + " levels (through an alias)");
    if (anchor != 0) anchors_[anchor] = Anchored{value, nodes, height};
    if (stack_.empty()) {
      root_ = std::move(value);
      return;
    }
    Frame& parent = stack_.back();
    parent.height = std::max(parent.height, height + 1);
    if (parent.value.is_array()) {
      parent.value.push_back(std::move(value));
    } else {
      parent.value[*parent.key] = std::move(value);
      parent.key.reset();
    }
  }

  const YamlLimits& limits_;
  json root_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  uint64_t nodes_ = 0;
};

// Byte offset of the first byte that does not start a valid UTF-8 sequence (overlong forms, surrogates and
// code points past U+10FFFF included), if any: YAML text is Unicode, PyYAML refuses such a file, and a JSON string
// holding it cannot be dumped (nlohmann throws), e.g. in an error message quoting the value.
std::optional<size_t> invalid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;  // no UTF-16 surrogates
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::nullopt;
}

}  // namespace

Result<json> parse_yaml(std::string_view text, std::string_view where_view, const YamlLimits& limits) {
  const std::string where(where_view);
  auto at = [&](int line) { return where + (line > 0 ? ":" + std::to_string(line) : std::string()) + ": "; };
  if (text.size() > limits.max_bytes)
    return Status::invalid_argument(where + ": " + std::to_string(text.size()) + " bytes is too large for a YAML file");
  if (text.find('\0') != std::string_view::npos) {
    const size_t nul = text.find('\0');
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(nul), '\n'));
    return Status::corruption(at(line) + "a NUL byte: not a YAML text file");
  }
  if (auto bad = invalid_utf8(text)) {
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(*bad), '\n'));
    return Status::corruption(at(line) + "not valid UTF-8 (byte " + std::to_string(*bad) + ")");
  }
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    JsonBuilder builder(limits);
    if (!parser.HandleNextDocument(builder)) return json(nullptr);
    json value = builder.take();
    JsonBuilder second(limits);
    if (parser.HandleNextDocument(second)) return Status::corruption(where + ": more than one YAML document");
    return value;
  } catch (const YamlError& e) {
    return Status::corruption(at(e.line) + e.message);
  } catch (const YAML::Exception& e) {
    return Status::corruption(at(e.mark.is_null() ? 0 : e.mark.line + 1) + "not valid YAML: " + e.msg);
  } catch (const std::exception& e) {  // e.g. std::bad_alloc from a hostile document
    return Status::corruption(where + ": cannot parse YAML: " + e.what());
  }
}

Result<json> read_yaml_file(const std::filesystem::path& path, const YamlLimits& limits) {
  G4_ASSIGN_OR_RETURN(std::string text, read_text_file(path, limits.max_bytes));
  return parse_yaml(text, path.string(), limits);
}

}  // namespace g4
