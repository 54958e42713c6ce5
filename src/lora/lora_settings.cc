#include "lora/lora_settings.h"

#include <cmath>

#include "gemma4/config_reader.h"
#include "lora/peft_pattern.h"
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

// Reads the list fields target_modules / exclude_modules (absent or null: the default).
Status module_list(const gemma4::ConfigReader& r, const char* key, std::vector<std::string>& out) {
  if (!r.has(key)) return {};
  const json& v = r.raw(key);
  if (!v.is_array()) return r.error(key, "expected a list of module names");
  out.clear();
  for (const json& e : v) {
    if (!e.is_string()) return r.error(key, "expected a list of module names");
    out.push_back(e.get<std::string>());
  }
  return {};
}

// MB's wildcard_match: re.match("^" + pattern with '*' replaced by "(.*)" + "$"), the rest a Python regex, run by
// the same translation PEFT's patterns use (peft_pattern.h); a construct it cannot translate is refused.
Result<PyFullMatch> wildcard(const std::string& pattern, std::string_view where) {
  std::string re;
  for (char c : pattern) re += c == '*' ? std::string("(.*)") : std::string(1, c);
  return PyFullMatch::compile(re, where);
}

Status check_patterns(const std::vector<std::string>& patterns, const gemma4::ConfigReader& r, const char* key) {
  for (const std::string& p : patterns) G4_RETURN_IF_ERROR(wildcard(p, r.where(key)).status());
  return {};
}

bool matches(const std::vector<std::string>& patterns, std::string_view name) {
  const size_t dot = name.rfind('.');
  const std::string_view leaf = dot == std::string_view::npos ? name : name.substr(dot + 1);
  for (const std::string& p : patterns) {
    if (p == leaf) return true;
    auto re = wildcard(p, "");  // checked when the settings were read
    if (re.ok() && re->matches(name)) return true;
  }
  return false;
}

Result<LoraSettings> from_section(const json& section, const fs::path& file) {
  const std::string where = file.string();
  if (!section.is_object()) return Status::invalid_argument(where + ": peft: expected a mapping");
  LoraSettings s;
  s.source = file;
  const gemma4::ConfigReader r(section, where, "peft.");
  G4_ASSIGN_OR_RETURN(const std::optional<std::string> target, r.optional_string("_target_"));
  if (!target || target->empty()) return Status::invalid_argument(where + ": peft: no _target_ (which PEFT method trained it?)");
  s.target_class = *target;
  G4_RETURN_IF_ERROR(check_target_class(s.target_class, where));
  G4_ASSIGN_OR_RETURN(s.dim, r.integer("dim", s.dim));
  G4_ASSIGN_OR_RETURN(s.alpha, r.number("alpha", s.alpha));
  G4_RETURN_IF_ERROR(module_list(r, "target_modules", s.target_modules));
  G4_RETURN_IF_ERROR(module_list(r, "exclude_modules", s.exclude_modules));
  G4_ASSIGN_OR_RETURN(s.dropout, r.number("dropout", s.dropout));
  G4_ASSIGN_OR_RETURN(const std::optional<std::string> position, r.optional_string("dropout_position"));
  s.dropout_position = position.value_or(s.dropout_position);
  G4_ASSIGN_OR_RETURN(s.normalize_moe_lora, r.boolean("normalize_moe_lora", s.normalize_moe_lora));
  G4_ASSIGN_OR_RETURN(s.share_expert_adapters, r.boolean("share_expert_adapters", s.share_expert_adapters));
  G4_ASSIGN_OR_RETURN(const bool shared_outer, r.boolean("experts_shared_outer_loras", false));
  if (shared_outer)
    return r.error("experts_shared_outer_loras", "true: SGLang's shared-outer expert layout (one fc1 A and one fc2 B for all "
                                                 "experts) has no exact PEFT form");
  if (!std::isfinite(s.alpha)) return r.error("alpha", "expected a finite number");
  if (s.dim < 1) return r.error("dim", std::to_string(s.dim) + " is not a rank (>= 1)");
  if (!(s.dropout >= 0 && s.dropout < 1)) return r.error("dropout", "expected 0 <= dropout < 1");
  if (s.dropout_position != "pre" && s.dropout_position != "post")
    return r.error("dropout_position", "expected pre or post, got '" + s.dropout_position + "'");
  if (!s.target_modules.empty() && !s.exclude_modules.empty())
    return Status::invalid_argument(where + ": peft: both target_modules and exclude_modules are set, which Megatron-Bridge refuses");
  G4_RETURN_IF_ERROR(check_patterns(s.target_modules, r, "target_modules"));
  G4_RETURN_IF_ERROR(check_patterns(s.exclude_modules, r, "exclude_modules"));
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
