#include "lora/peft_adapter.h"

#include <cmath>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "lora/peft_pattern.h"
#include "runtime/finite_scan.h"
#include "runtime/json_parse.h"
#include "runtime/text_file.h"

namespace g4::lora {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kKeyPrefix = "base_model.model.";
constexpr std::string_view kSuffixA = ".lora_A.weight", kSuffixB = ".lora_B.weight";
constexpr std::string_view kBaseLayer = ".base_layer";
constexpr size_t kMaxConfigBytes = 16u << 20;

// LoraConfig fields (peft 0.21.2 tuners/lora/config.py) tagged is_lora_variant, or whose truthy value changes what
// the adapter computes beyond scale · B · A: any of them set is refused.
constexpr const char* kRefusedWhenSet[] = {
    "use_dora",  "velora_config", "alora_invocation_tokens", "monteclora_config", "use_bdlora", "arrow_config",
    "kasa_config", "lora_bias",   "fan_in_fan_out",          "modules_to_save",   "trainable_token_indices",
    "layers_to_transform",        "layer_replication",       "use_qalora",
};

bool truthy(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return true;
}

// A pattern list (target_modules / exclude_modules): null, a regex string, or a list of names.
struct ModulePatterns {
  bool present = false;
  bool all_linear = false;               // PEFT's "all-linear" shorthand
  std::optional<PyFullMatch> regex;
  std::vector<std::string> names;
  bool matches(std::string_view module) const {
    if (all_linear) return module != "lm_head" && !module.ends_with(".lm_head");
    if (regex) return regex->matches(module);
    for (const std::string& n : names)
      if (suffix_matches(module, n)) return true;
    return false;
  }
};

Result<ModulePatterns> read_patterns(const json& config, const char* field, const std::string& where) {
  ModulePatterns p;
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return p;
  p.present = true;
  if (it->is_string()) {
    const std::string s = it->get<std::string>();
    if (s == "all-linear") {
      p.all_linear = true;
      return p;
    }
    G4_ASSIGN_OR_RETURN(PyFullMatch m, PyFullMatch::compile(s, where + ": " + field));
    p.regex = std::move(m);
    return p;
  }
  if (!it->is_array()) return Status::invalid_argument(where + ": " + field + " is neither a string nor a list");
  for (const json& e : *it) {
    if (!e.is_string()) return Status::invalid_argument(where + ": " + field + " holds a non-string entry " + e.dump());
    p.names.push_back(e.get<std::string>());
  }
  return p;
}

// rank_pattern / alpha_pattern in the file's key order (PEFT takes the first key that matches).
template <class T>
struct PatternTable {
  std::vector<std::pair<PyFullMatch, T>> rows;
  std::optional<T> lookup(std::string_view name) const {
    for (const auto& [m, v] : rows)
      if (m.matches(name)) return v;
    return std::nullopt;
  }
};

template <class T>
Result<PatternTable<T>> read_pattern_table(const nlohmann::ordered_json& config, const char* field, const std::string& where) {
  PatternTable<T> t;
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return t;
  if (!it->is_object()) return Status::invalid_argument(where + ": " + field + " is not an object");
  for (const auto& [key, value] : it->items()) {
    const bool ok = std::is_integral_v<T> ? value.is_number_integer() : value.is_number();
    if (!ok) return Status::invalid_argument(where + ": " + field + "['" + key + "'] is " + value.dump() + ", not a number");
    // get_pattern_key: re.match(rf"(.*\.)?({key})$", name).
    G4_ASSIGN_OR_RETURN(PyFullMatch m, PyFullMatch::compile("(.*\\.)?(" + key + ")", where + ": " + field + " key"));
    t.rows.emplace_back(std::move(m), value.template get<T>());
  }
  return t;
}

// The parameters of `module` that a target_parameters entry names (the entry is "<module>.<p>" or a dotted
// suffix of it), in the order the module registers them. Unknown orders of several parameters are refused.
Result<std::vector<std::string>> targeted_parameters(const std::vector<std::string>& entries, const std::string& module,
                                                     const std::string& where) {
  std::set<std::string> found;
  for (const std::string& e : entries) {
    const size_t dot = e.rfind('.');
    const std::string p = dot == std::string::npos ? e : e.substr(dot + 1);
    const std::string owner = dot == std::string::npos ? std::string() : e.substr(0, dot);
    if (owner.empty() || suffix_matches(module, owner)) found.insert(p);
  }
  if (found.size() <= 1) return std::vector<std::string>(found.begin(), found.end());
  // transformers' Gemma4TextExperts registers gate_up_proj, then down_proj (modeling_gemma4.py).
  static const std::vector<std::string> kGemma4Experts = {"gate_up_proj", "down_proj"};
  std::vector<std::string> ordered;
  for (const std::string& p : kGemma4Experts)
    if (found.count(p)) ordered.push_back(p);
  if (ordered.size() != found.size()) {
    std::string names;
    for (const std::string& p : found) names += (names.empty() ? "" : ", ") + p;
    return Status::not_supported(where + ": target_parameters name several parameters of '" + module + "' (" + names +
                                 "), whose nesting order g4convert knows only for Gemma 4's experts (gate_up_proj, down_proj)");
  }
  return ordered;
}

bool is_adapter_float(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

}  // namespace

Result<PeftAdapter> PeftAdapter::open(const fs::path& dir) {
  const fs::path config_path = dir / kAdapterConfigFile, weights_path = dir / kAdapterWeightsFile;
  const std::string where = config_path.string();
  std::error_code ec;
  if (!fs::exists(config_path, ec))
    return Status::not_found(dir.string() + ": no " + kAdapterConfigFile + " (not a PEFT adapter directory)");
  G4_ASSIGN_OR_RETURN(const std::string text, read_text_file(config_path, kMaxConfigBytes));
  G4_ASSIGN_OR_RETURN(const json config, parse_json(text, where));
  if (!config.is_object()) return Status::invalid_argument(where + ": not a JSON object");
  // The same text again, keeping key order for rank_pattern / alpha_pattern (its depth is already checked).
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(text);

  const std::string peft_type = config.value("peft_type", std::string());
  if (peft_type != "LORA")
    return Status::not_supported(where + ": peft_type is '" + peft_type + "'; only LORA adapters can be applied as W + s·B·A");
  for (const char* field : kRefusedWhenSet) {
    auto it = config.find(field);
    if (it != config.end() && truthy(*it))
      return Status::not_supported(where + ": " + field + " = " + it->dump() + ": this adapter is not a plain W + s·B·A update, "
                                   "which is all g4convert applies exactly");
  }
  if (const std::string bias = config.value("bias", std::string("none")); bias != "none")
    return Status::not_supported(where + ": bias = '" + bias + "': the adapter trains biases, which g4convert does not apply");
  if (config.value("init_lora_weights", json(true)) == json("mica"))
    return Status::not_supported(where + ": init_lora_weights = 'mica' is a LoRA variant, not a plain W + s·B·A update");
  auto r_it = config.find("r");
  auto alpha_it = config.find("lora_alpha");
  if (r_it == config.end() || !r_it->is_number_integer() || r_it->get<int64_t>() <= 0)
    return Status::invalid_argument(where + ": r must be a positive integer");
  if (alpha_it == config.end() || !alpha_it->is_number())
    return Status::invalid_argument(where + ": lora_alpha must be a number");
  const bool rslora = truthy(config.value("use_rslora", json(false)));

  PeftAdapter adapter;
  adapter.dir_ = dir;
  adapter.rank_ = r_it->get<int64_t>();
  adapter.alpha_ = alpha_it->get<double>();
  if (auto b = config.find("base_model_name_or_path"); b != config.end() && b->is_string()) adapter.base_model_ = b->get<std::string>();

  G4_ASSIGN_OR_RETURN(const ModulePatterns targets, read_patterns(config, "target_modules", where));
  G4_ASSIGN_OR_RETURN(const ModulePatterns excludes, read_patterns(config, "exclude_modules", where));
  std::vector<std::string> target_parameters;
  if (auto tp = config.find("target_parameters"); tp != config.end() && !tp->is_null()) {
    if (!tp->is_array()) return Status::invalid_argument(where + ": target_parameters is not a list");
    for (const json& e : *tp) {
      if (!e.is_string()) return Status::invalid_argument(where + ": target_parameters holds a non-string entry " + e.dump());
      target_parameters.push_back(e.get<std::string>());
    }
  }
  G4_ASSIGN_OR_RETURN(const PatternTable<int64_t> rank_pattern, read_pattern_table<int64_t>(ordered, "rank_pattern", where));
  G4_ASSIGN_OR_RETURN(const PatternTable<double> alpha_pattern, read_pattern_table<double>(ordered, "alpha_pattern", where));

  if (!fs::exists(weights_path, ec)) {
    if (fs::exists(dir / "adapter_model.bin", ec))
      return Status::not_supported((dir / "adapter_model.bin").string() + ": pickled adapters are not read; save with safe_serialization");
    return Status::not_found(weights_path.string() + ": missing");
  }
  G4_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(weights_path));
  adapter.file_ = std::make_shared<const SafetensorsFile>(std::move(file));
  const std::string wfile = weights_path.string();

  // Pair lora_A / lora_B by the wrapped path between the prefix and the suffix.
  struct Pair {
    const TensorInfo* a = nullptr;
    const TensorInfo* b = nullptr;
  };
  std::map<std::string, Pair> pairs;
  for (const TensorInfo& t : adapter.file_->tensors()) {
    const std::string& k = t.name;
    auto refuse = [&](const std::string& why) { return Status::not_supported(wfile + ": tensor '" + k + "': " + why); };
    if (!k.starts_with(kKeyPrefix)) return refuse("not a PEFT LoRA key (expected 'base_model.model.…')");
    if (k.find(".lora_magnitude_vector") != std::string::npos) return refuse("a DoRA magnitude vector (DoRA is not applied)");
    if (k.find(".lora_embedding_") != std::string::npos) return refuse("an embedding LoRA, which g4convert does not apply");
    if (k.ends_with(".lora_B.bias")) return refuse("a LoRA bias (lora_bias), which g4convert does not apply");
    const bool is_a = k.ends_with(kSuffixA), is_b = k.ends_with(kSuffixB);
    if (!is_a && !is_b)
      return refuse("neither a lora_A.weight nor a lora_B.weight (modules_to_save or trainable parameters are not applied)");
    if (t.shape.size() != 2) return Status::mismatch(wfile + ": tensor '" + k + "': shape " + shape_to_string(t.shape) + " is not 2-D");
    if (!is_adapter_float(t.dtype))
      return refuse("dtype " + std::string(dtype_name(t.dtype)) + " (LoRA factors are F32, BF16 or F16)");
    const std::string path = k.substr(kKeyPrefix.size(), k.size() - kKeyPrefix.size() - kSuffixA.size());
    (is_a ? pairs[path].a : pairs[path].b) = &t;
  }

  for (const auto& [path, pair] : pairs) {
    const std::string shown = std::string(kKeyPrefix) + path;
    if (!pair.a || !pair.b)
      return Status::mismatch(wfile + ": tensor '" + shown + (pair.a ? std::string(kSuffixA) : std::string(kSuffixB)) + "' has no " +
                              (pair.a ? "lora_B" : "lora_A") + " partner");
    // Peel the ParamWrapper nesting levels.
    std::string module = path;
    size_t depth = 0;
    while (module.ends_with(kBaseLayer)) {
      module.resize(module.size() - kBaseLayer.size());
      ++depth;
    }
    PeftDelta d;
    d.key_a = shown + std::string(kSuffixA);
    d.key_b = shown + std::string(kSuffixB);
    std::string pattern_name;  // what rank_pattern / alpha_pattern are matched against
    G4_ASSIGN_OR_RETURN(const std::vector<std::string> params, targeted_parameters(target_parameters, module, where));
    const bool linear = depth == 0 && targets.present && targets.matches(module) && !(excludes.present && excludes.matches(module));
    if (linear && !params.empty())
      return Status::not_supported(where + ": '" + module + "' is matched both by target_modules and by target_parameters (" +
                                   params.front() + ")");
    if (linear) {
      d.tensor = module + ".weight";
      pattern_name = module;
    } else if (!params.empty() && depth < params.size()) {
      // The last registered parameter is the outermost wrapper (no base_layer), the first the innermost.
      const std::string& p = params[params.size() - 1 - depth];
      d.tensor = module + "." + p;
      pattern_name = d.tensor;
      // Some parameters' keys missing would shift the levels: refuse rather than guess which is which.
      for (size_t level = 0; level < params.size(); ++level) {
        std::string other = module;
        for (size_t l = 0; l < level; ++l) other += kBaseLayer;
        if (!pairs.count(other))
          return Status::mismatch(wfile + ": '" + module + "' has target_parameters " + params.front() + " and " + params.back() +
                                  " but no adapter at '" + std::string(kKeyPrefix) + other + "': the nesting levels cannot be assigned");
      }
    } else {
      return Status::mismatch(wfile + ": tensor '" + d.key_a + "' matches no target of " + where +
                              " (PEFT would silently ignore it)");
    }
    const int64_t r = rank_pattern.lookup(pattern_name).value_or(adapter.rank_);
    const double alpha = alpha_pattern.lookup(pattern_name).value_or(adapter.alpha_);
    if (r <= 0) return Status::invalid_argument(where + ": rank_pattern gives '" + pattern_name + "' rank " + std::to_string(r));
    const Shape& sa = pair.a->shape;
    const Shape& sb = pair.b->shape;
    auto shapes = [&] { return "lora_A " + shape_to_string(sa) + ", lora_B " + shape_to_string(sb); };
    d.rank = r;
    d.in = sa[1];
    d.out = sb[0];
    if (linear) {
      if (sa[0] != r || sb[1] != r)
        return Status::mismatch(wfile + ": '" + shown + "': " + shapes() + " disagree with rank " + std::to_string(r) + " (" + where + ")");
    } else {
      if (sa[0] != sb[1] || sa[0] % r != 0 || sa[0] == 0)
        return Status::mismatch(wfile + ": '" + shown + "': " + shapes() + " are not [E·r, in] / [out, E·r] with rank " +
                                std::to_string(r) + " (" + where + ")");
      d.experts = sa[0] / r;
    }
    if (d.in <= 0 || d.out <= 0) return Status::mismatch(wfile + ": '" + shown + "': empty factors, " + shapes());
    d.scale = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
    if (adapter.by_tensor_.count(d.tensor))
      return Status::mismatch(wfile + ": two adapters change '" + d.tensor + "'");
    adapter.by_tensor_[d.tensor] = adapter.deltas_.size();
    adapter.deltas_.push_back(std::move(d));
  }
  return adapter;
}

const PeftDelta* PeftAdapter::find(const std::string& tensor) const {
  auto it = by_tensor_.find(tensor);
  return it == by_tensor_.end() ? nullptr : &deltas_[it->second];
}

Result<PeftFactors> PeftAdapter::factors(size_t i) const {
  G4_CHECK(i < deltas_.size());
  const PeftDelta& d = deltas_[i];
  const int64_t e_count = std::max<int64_t>(d.experts, 1);
  auto read = [&](const std::string& key, std::vector<float>& out) -> Status {
    const TensorInfo* t = file_->find(key);
    G4_CHECK(t != nullptr);
    std::span<const std::byte> bytes = file_->data(*t);
    if (NonFiniteCount bad = count_non_finite(t->dtype, bytes); bad.any())
      return Status::corruption(file_->path() + ": tensor '" + key + "' holds " + std::to_string(bad.nan) + " NaN and " +
                                std::to_string(bad.inf) + " Inf values");
    out.resize(t->numel());
    to_f32(t->dtype, bytes.data(), out.data(), out.size());
    return {};
  };
  PeftFactors f;
  // lora_A [E·r, in] is already [E, r, in]: row e·r+k is expert e, rank k.
  G4_RETURN_IF_ERROR(read(d.key_a, f.a));
  std::vector<float> packed_b;
  G4_RETURN_IF_ERROR(read(d.key_b, packed_b));
  if (d.experts == 0) {
    f.b = std::move(packed_b);
    return f;
  }
  // lora_B [out, r·E]: column k·E+e is rank k, expert e (ParamWrapper reshapes it to (out, r, E)).
  const int64_t r = d.rank, out = d.out;
  f.b.resize(static_cast<size_t>(e_count * out * r));
  for (int64_t e = 0; e < e_count; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < r; ++k) f.b[(e * out + o) * r + k] = packed_b[o * r * e_count + k * e_count + e];
  return f;
}

}  // namespace g4::lora
