#include "convert/export_config.h"

#include "convert/mcore_keys.h"

#include <set>

#include "convert/mcore_files.h"
#include "convert/provider_config.h"
#include "convert/text_mode.h"
#include "runtime/yaml_reader.h"

namespace g4::convert {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Not architecture: token ids, runtime switches and bookkeeping.
const std::set<std::string> kNotArchitecture = {"pad_token_id", "bos_token_id", "eos_token_id", "initializer_range", "use_cache",
                                                "dtype", "torch_dtype", "transformers_version", "architectures", "_name_or_path"};

std::string short_dump(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Keys of both objects in order (nlohmann sorts them); a key only one side states counts when `require_both`.
std::string first_difference(const json& a, const json& b, const std::string& path, bool require_both) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.insert(k);
  for (const auto& [k, v] : b.items()) keys.insert(k);
  for (const std::string& k : keys) {
    if (kNotArchitecture.count(k)) continue;
    const bool in_a = a.contains(k), in_b = b.contains(k);
    if (!in_a || !in_b) {
      if (require_both) return path + k + ": " + (in_a ? short_dump(a.at(k)) : "absent") + " vs " + (in_b ? short_dump(b.at(k)) : "absent");
      continue;
    }
    if (a.at(k) != b.at(k)) return path + k + ": " + short_dump(a.at(k)) + " vs " + short_dump(b.at(k));
  }
  return "";
}

struct OwnConfig {
  gemma4::ModelConfig config;
  std::string source;
  std::vector<std::string> warnings;
  std::vector<std::string> unstated;  // fields run_config.yaml does not record (defaults were written)
};

// The checkpoint's own description, if it has one.
Result<std::optional<OwnConfig>> own_config(const dcp::Checkpoint& ckpt) {
  const fs::path iter = ckpt.iteration_dir();
  if (fs::exists(iter / kHfConfigFile)) {
    G4_ASSIGN_OR_RETURN(gemma4::ModelConfig c, gemma4::load_config((iter / kHfConfigFile).string()));
    return std::optional<OwnConfig>(OwnConfig{std::move(c), (iter / kHfConfigFile).string(), {}});
  }
  const fs::path yaml = iter / kRunConfigFile;
  if (!fs::exists(yaml)) return std::optional<OwnConfig>();
  G4_ASSIGN_OR_RETURN(json run_config, read_yaml_file(yaml));
  // A run config without a model section (an adapter checkpoint written apart from its base) describes no model.
  if (!run_config.is_object() || !run_config.contains("model") || run_config.at("model").is_null()) return std::optional<OwnConfig>();
  G4_ASSIGN_OR_RETURN(RecoveredConfig recovered, hf_config_from_run_config(run_config, yaml.string(), ckpt.metadata()));
  G4_ASSIGN_OR_RETURN(gemma4::ModelConfig c, gemma4::parse_config_json(recovered.hf, yaml.string() + " (as config.json)"));
  OwnConfig own{std::move(c), yaml.string(), {}, recovered.unrecoverable};
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!recovered.from_shapes.empty())
    own.warnings.push_back(yaml.string() + " does not state " + join(recovered.from_shapes) + "; taken from the tensor shapes");
  if (!recovered.unrecoverable.empty())
    own.warnings.push_back(yaml.string() + " does not record " + join(recovered.unrecoverable) +
                           "; transformers' defaults were written (pass --config or --reference-hf with the original config.json to set them)");
  return std::optional<OwnConfig>(std::move(own));
}

}  // namespace

std::string first_architecture_difference(const gemma4::ModelConfig& a, const gemma4::ModelConfig& b,
                                         const std::vector<std::string>& unstated) {
  if (a.form != b.form) return std::string("form: ") + std::string(gemma4::form_name(a.form)) + " vs " + std::string(gemma4::form_name(b.form));
  json ta = gemma4::text_config_to_json(a.text), tb = gemma4::text_config_to_json(b.text);
  for (std::string field : unstated) {
    if (field.starts_with("text_config.")) field = field.substr(12);
    ta.erase(field), tb.erase(field);
  }
  const std::string text_path = a.form == gemma4::ModelForm::kConditional ? "text_config." : "";
  if (std::string d = first_difference(ta, tb, text_path, /*require_both=*/true); !d.empty()) return d;
  for (auto [name, va, vb] : {std::tuple{"vision_config", &a.vision_config, &b.vision_config}, {"audio_config", &a.audio_config, &b.audio_config}}) {
    if (va->is_null() != vb->is_null())
      return std::string(name) + ": " + (va->is_null() ? "null" : "a tower") + " vs " + (vb->is_null() ? "null" : "a tower");
    // Serialisations of one tower config differ in which defaults they spell out: compare what both state.
    if (!va->is_null())
      if (std::string d = first_difference(*va, *vb, std::string(name) + ".", /*require_both=*/false); !d.empty()) return d;
  }
  return "";
}

Result<ExportConfig> select_export_config(const dcp::Checkpoint& ckpt, const ExportConfigOptions& options) {
  const std::string where = ckpt.iteration_dir().string();
  G4_ASSIGN_OR_RETURN(std::optional<OwnConfig> own, own_config(ckpt));
  std::optional<fs::path> explicit_path = options.config_file;
  if (!explicit_path && options.reference_hf) explicit_path = *options.reference_hf / "config.json";
  if (!explicit_path) {
    if (!own)
      return Status::not_found(where + ": no " + std::string(kHfConfigFile) + " or " + kRunConfigFile +
                               " describes the model; pass --config with its HF config.json (or --reference-hf DIR)");
    return ExportConfig{std::move(own->config), std::move(own->source), std::move(own->warnings), ""};
  }
  G4_ASSIGN_OR_RETURN(gemma4::ModelConfig given, gemma4::load_config(explicit_path->string()));
  ExportConfig out{std::move(given), explicit_path->string(), {}, ""};
  // Megatron-Bridge's text mode stores a conditional model as a plain GPTModel whose run config describes the text
  // model alone: there a conditional config is compared on what that run config can state.
  const bool text_mode = own && out.config.form == gemma4::ModelForm::kConditional && own->config.form == gemma4::ModelForm::kCausal &&
                         language_prefix(ckpt) == std::optional<std::string>("");
  if (own)
    if (std::string d = first_architecture_difference(text_mode ? text_model_config(out.config) : out.config, own->config, own->unstated);
        !d.empty()) {
      out.disagreement = explicit_path->string() + " and " + own->source + " disagree on " + d;
      if (!options.disagreement_is_reported) return Status::mismatch(out.disagreement);
    }
  return out;
}

}  // namespace g4::convert
