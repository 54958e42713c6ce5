#include "lora/lora_settings.h"

#include <cmath>

#include "runtime/yaml_reader.h"

namespace g4::lora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kTargetModule = "megatron.bridge.peft.";

// What each _target_ means for an export: LoRA and VLMLoRA are plain LoRA; the others change the forward in ways
// a PEFT LoRA adapter cannot state.
Status check_target_class(const std::string& target, const std::string& where) {
  if (target == "megatron.bridge.peft.lora.LoRA" || target == "megatron.bridge.peft.lora.VLMLoRA") return {};
  if (target.find(".dora.") != std::string::npos || target.ends_with(".DoRA"))
    return Status::invalid_argument(where + ": peft._target_ is " + target +
                                    ": DoRA adds a learned magnitude per output row; a PEFT LoRA adapter cannot express it "
                                    "(merge it in Megatron-Bridge, or train plain LoRA)");
  if (target.find("canonical_lora") != std::string::npos || target.ends_with(".CanonicalLoRA"))
    return Status::invalid_argument(where + ": peft._target_ is " + target +
                                    ": canonical LoRA keeps separate q/k/v and gate/up adapters with their own A, which "
                                    "g4convert does not read yet");
  return Status::invalid_argument(where + ": peft._target_ is '" + target + "', not " + std::string(kTargetModule) +
                                  "lora.LoRA or VLMLoRA");
}

// One field of the section, typed: a missing or null field keeps the default.
class Fields {
 public:
  Fields(const json& section, std::string where) : s_(section), where_(std::move(where)) {}

  Status integer(const char* key, int64_t& out) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_number_integer()) return wrong(key, "an integer");
    out = v->get<int64_t>();
    return {};
  }
  Status number(const char* key, double& out) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_number()) return wrong(key, "a number");
    out = v->get<double>();
    if (!std::isfinite(out)) return wrong(key, "a finite number");
    return {};
  }
  Status boolean(const char* key, bool& out) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_boolean()) return wrong(key, "true or false");
    out = v->get<bool>();
    return {};
  }
  Status text(const char* key, std::string& out) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_string()) return wrong(key, "a string");
    out = v->get<std::string>();
    return {};
  }
  Status strings(const char* key, std::vector<std::string>& out) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_array()) return wrong(key, "a list of module names");
    out.clear();
    for (const json& e : *v) {
      if (!e.is_string()) return wrong(key, "a list of module names");
      out.push_back(e.get<std::string>());
    }
    return {};
  }

 private:
  const json* get(const char* key) const {
    auto it = s_.find(key);
    return it == s_.end() || it->is_null() ? nullptr : &*it;
  }
  Status wrong(const char* key, const char* expected) const {
    return Status::invalid_argument(where_ + ": peft." + key + ": expected " + expected);
  }

  const json& s_;
  std::string where_;
};

// MB's wildcard_match: "^" + pattern with '*' replaced by "(.*)" + "$", the rest taken as a Python regex. Target
// patterns use only '*' and '.', which is all this supports ('.' any one character, as in the regex); any other
// regex metacharacter is refused when the settings are read. (No <regex>: GCC 12's trips -Werror in sanitized builds.)
constexpr std::string_view kRegexMeta = "[](){}+?^$|\\";

bool wildcard_match(std::string_view pattern, std::string_view name) {
  // Iterative glob matching with one backtrack point for the last '*'.
  size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '.' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1, n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool matches(const std::vector<std::string>& patterns, std::string_view name) {
  const size_t dot = name.rfind('.');
  const std::string_view leaf = dot == std::string_view::npos ? name : name.substr(dot + 1);
  for (const std::string& p : patterns)
    if (p == leaf || wildcard_match(p, name)) return true;
  return false;
}

Status check_patterns(const std::vector<std::string>& patterns, const std::string& where, const char* key) {
  for (const std::string& p : patterns)
    if (p.find_first_of(kRegexMeta) != std::string::npos)
      return Status::invalid_argument(where + ": peft." + key + ": '" + p +
                                      "' uses regular-expression syntax beyond '*' and '.', which g4convert does not match");
  return {};
}

Result<LoraSettings> from_section(const json& section, const fs::path& file) {
  const std::string where = file.string();
  if (!section.is_object()) return Status::invalid_argument(where + ": peft: expected a mapping");
  LoraSettings s;
  s.source = file;
  const Fields f(section, where);
  G4_RETURN_IF_ERROR(f.text("_target_", s.target_class));
  if (s.target_class.empty()) return Status::invalid_argument(where + ": peft: no _target_ (which PEFT method trained it?)");
  G4_RETURN_IF_ERROR(check_target_class(s.target_class, where));
  G4_RETURN_IF_ERROR(f.integer("dim", s.dim));
  G4_RETURN_IF_ERROR(f.number("alpha", s.alpha));
  G4_RETURN_IF_ERROR(f.strings("target_modules", s.target_modules));
  G4_RETURN_IF_ERROR(f.strings("exclude_modules", s.exclude_modules));
  G4_RETURN_IF_ERROR(f.number("dropout", s.dropout));
  G4_RETURN_IF_ERROR(f.text("dropout_position", s.dropout_position));
  G4_RETURN_IF_ERROR(f.boolean("normalize_moe_lora", s.normalize_moe_lora));
  G4_RETURN_IF_ERROR(f.boolean("share_expert_adapters", s.share_expert_adapters));
  bool shared_outer = false;
  G4_RETURN_IF_ERROR(f.boolean("experts_shared_outer_loras", shared_outer));
  if (shared_outer)
    return Status::invalid_argument(where + ": peft.experts_shared_outer_loras is true: SGLang's shared-outer expert layout "
                                    "(one fc1 A and one fc2 B for all experts) has no exact PEFT form");
  if (s.dim < 1) return Status::invalid_argument(where + ": peft.dim: " + std::to_string(s.dim) + " is not a rank (>= 1)");
  if (s.dropout < 0 || s.dropout >= 1) return Status::invalid_argument(where + ": peft.dropout: expected 0 <= dropout < 1");
  if (s.dropout_position != "pre" && s.dropout_position != "post")
    return Status::invalid_argument(where + ": peft.dropout_position: expected pre or post, got '" + s.dropout_position + "'");
  if (!s.target_modules.empty() && !s.exclude_modules.empty())
    return Status::invalid_argument(where + ": peft: both target_modules and exclude_modules are set, which Megatron-Bridge refuses");
  G4_RETURN_IF_ERROR(check_patterns(s.target_modules, where, "target_modules"));
  G4_RETURN_IF_ERROR(check_patterns(s.exclude_modules, where, "exclude_modules"));
  return s;
}

}  // namespace

Result<LoraSettings> read_lora_settings(const fs::path& iteration_dir, const LoraSettingsOptions& options) {
  if (options.rank && *options.rank < 1) return Status::invalid_argument("--rank must be at least 1");
  if (options.alpha && !std::isfinite(*options.alpha)) return Status::invalid_argument("--alpha must be a finite number");
  std::error_code ec;
  fs::path file = iteration_dir / "run_config.yaml";
  if (!fs::exists(file, ec)) file = iteration_dir.parent_path() / "run_config.yaml";
  json run_config;
  if (fs::exists(file, ec)) {
    G4_ASSIGN_OR_RETURN(run_config, read_yaml_file(file));
  }
  const json* section = nullptr;
  if (run_config.is_object())
    if (auto it = run_config.find("peft"); it != run_config.end() && !it->is_null()) section = &*it;

  LoraSettings s;
  if (section) {
    G4_ASSIGN_OR_RETURN(s, from_section(*section, file));
    if (options.rank && *options.rank != s.dim)
      return Status::invalid_argument("--rank " + std::to_string(*options.rank) + " disagrees with " + file.string() +
                                      ": peft.dim " + std::to_string(s.dim));
    if (options.alpha && *options.alpha != s.alpha)
      return Status::invalid_argument("--alpha disagrees with " + file.string() + ": peft.alpha");
  } else {
    if (!options.rank)
      return Status::invalid_argument(iteration_dir.string() + ": no run_config.yaml with a peft: section; give --rank (and --alpha)");
    s.dim = *options.rank;
    s.alpha = options.alpha.value_or(static_cast<double>(*options.rank));
  }
  if (run_config.is_object())
    if (auto ck = run_config.find("checkpoint"); ck != run_config.end() && ck->is_object())
      if (auto p = ck->find("pretrained_checkpoint"); p != ck->end() && p->is_string() && !p->get<std::string>().empty())
        s.pretrained_checkpoint = fs::path(p->get<std::string>());
  return s;
}

bool is_target_module(const LoraSettings& settings, std::string_view name) {
  // MB asserts exclude_modules is empty whenever target_modules is set; with no targets, every linear not excluded.
  if (!settings.target_modules.empty()) return matches(settings.target_modules, name);
  return !matches(settings.exclude_modules, name);
}

}  // namespace g4::lora
