#include "lora/peft_export.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "convert/export_config.h"
#include "convert/mcore_keys.h"
#include "runtime/output_dir.h"
#include "runtime/safetensors_writer.h"

namespace g4::lora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// One output tensor: target `target`'s lora_A or lora_B.
struct OutTensor {
  size_t target = 0;
  bool b = false;
};

// The values of one output tensor in PEFT's layout (lora-peft.md A.3), as f32.
Result<std::vector<float>> peft_values(const dcp::Checkpoint& ckpt, const AdapterLayout& layout, const OutTensor& t) {
  const PeftTarget& target = layout.targets[t.target];
  const MegatronAdapter& ad = layout.adapters[target.adapter];
  G4_ASSIGN_OR_RETURN(AdapterValues v, read_adapter(ckpt, ad));
  const int64_t r = ad.rank;
  if (ad.experts == ExpertStorage::kNone) {
    if (!t.b) return std::move(v.a);  // A is shared by every target of the adapter (q/k/v, gate/up)
    std::vector<float> out(static_cast<size_t>(target.out_rows * r), 0.0f);
    for (const RowRun& run : target.b_rows)
      std::memcpy(out.data() + run.hf_row * r, v.b.data() + run.mg_row * r, static_cast<size_t>(run.rows * r) * sizeof(float));
    return out;
  }
  const int64_t E = ad.num_experts;
  const bool legacy = ad.experts == ExpertStorage::kLegacyShared;
  if (!t.b) {
    // lora_A [E·r, in]: row e·r+k = A_e[k, :], which is the [E, r, in] stack as it is.
    if (!legacy) return std::move(v.a);
    std::vector<float> out;
    out.reserve(v.a.size() * static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) out.insert(out.end(), v.a.begin(), v.a.end());
    return out;
  }
  // lora_B [d1, E·r]: column k·E+e = B_e[:, k] (PEFT reshapes B to (d1, r, E)).
  const int64_t d1 = target.out_rows;
  std::vector<float> out(static_cast<size_t>(d1 * E * r));
  for (int64_t e = 0; e < E; ++e) {
    const float* be = v.b.data() + (legacy ? 0 : e * d1 * r);
    for (int64_t o = 0; o < d1; ++o)
      for (int64_t k = 0; k < r; ++k) out[static_cast<size_t>(o * E * r + k * E + e)] = be[o * r + k];
  }
  return out;
}

Shape peft_shape(const AdapterLayout& layout, const OutTensor& t) {
  const PeftTarget& target = layout.targets[t.target];
  const MegatronAdapter& ad = layout.adapters[target.adapter];
  const int64_t r = ad.rank, in = ad.a_shape.back();
  if (ad.experts == ExpertStorage::kNone) return t.b ? Shape{target.out_rows, r} : Shape{r, in};
  const int64_t er = ad.num_experts * r;
  return t.b ? Shape{target.out_rows, er} : Shape{er, in};
}

double squared_norm(const std::vector<float>& b, int64_t r, const std::vector<RowRun>& runs) {
  double s = 0;
  for (const RowRun& run : runs)
    for (int64_t i = run.mg_row * r; i < (run.mg_row + run.rows) * r; ++i) s += static_cast<double>(b[i]) * b[i];
  return s;
}

// Checks every adapter before anything is written: finite values, untrained rows still zero (a warning with the
// norm: they are dropped), and E identical expert slices where the settings say the experts share one adapter.
Status check_adapters(const dcp::Checkpoint& ckpt, const AdapterLayout& layout, const LoraSettings& settings,
                      std::vector<std::string>& warnings) {
  const std::string where = ckpt.iteration_dir().string();
  std::map<int, std::vector<const UntrainedRows*>> untrained;
  for (const UntrainedRows& u : layout.untrained) untrained[u.adapter].push_back(&u);
  for (size_t a = 0; a < layout.adapters.size(); ++a) {
    const MegatronAdapter& ad = layout.adapters[a];
    G4_ASSIGN_OR_RETURN(AdapterValues v, read_adapter(ckpt, ad));
    for (auto [values, key] : {std::pair{&v.a, &ad.a.key}, std::pair{&v.b, &ad.b.key}})
      for (float x : *values)
        if (!std::isfinite(x)) return Status::invalid_argument(where + ": '" + *key + "' holds NaN or Inf");
    for (const UntrainedRows* u : untrained[static_cast<int>(a)]) {
      const double n = std::sqrt(squared_norm(v.b, ad.rank, u->b_rows));
      if (n != 0)
        warnings.push_back(where + ": '" + ad.b.key + "': B rows of " + u->why + " are not zero (norm " + std::to_string(n) +
                           "); Megatron never uses them, so they are not exported");
    }
    if (ad.experts != ExpertStorage::kExpertAxis || !settings.share_expert_adapters || settings.source.empty()) continue;
    for (auto [values, key] : {std::pair{&v.a, &ad.a.key}, std::pair{&v.b, &ad.b.key}}) {
      const size_t slice = values->size() / static_cast<size_t>(ad.num_experts);
      for (int64_t e = 1; e < ad.num_experts; ++e)
        if (std::memcmp(values->data(), values->data() + e * slice, slice * sizeof(float)) != 0)
          return Status::invalid_argument(where + ": '" + *key + "': expert " + std::to_string(e) +
                                          "'s adapter differs from expert 0's (a per-expert adapter), but " + settings.source.string() +
                                          " says share_expert_adapters: true");
    }
  }
  return {};
}

std::string join_modules(const std::vector<std::string>& v) {
  std::string s = "'" + v.front() + "'";
  if (v.size() > 1) s += " and " + std::to_string(v.size() - 1) + " more";
  return s;
}

}  // namespace

bool looks_like_peft_adapter_dir(const fs::path& dir) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name != kAdapterConfigFile && name != kAdapterWeightsFile && name != "README.md") return false;
  }
  return !ec;
}

Result<json> adapter_config_json(const AdapterLayout& layout, const LoraSettings& settings, const std::string& base_model) {
  const std::vector<std::string> params = target_parameters(layout);
  if (!params.empty() && settings.dropout > 0)
    return Status::invalid_argument(settings.source.string() + ": peft.dropout is " + std::to_string(settings.dropout) +
                                    ", but PEFT's expert adapters (target_parameters, lora.ParamWrapper) refuse dropout");
  json rank_pattern = json::object();
  for (const auto& [path, r] : layout.rank_pattern) rank_pattern[path] = r;
  const std::string regex = target_modules_regex(layout);
  json c = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model},
      {"r", layout.rank},
      {"lora_alpha", settings.alpha},
      {"lora_dropout", params.empty() ? settings.dropout : 0.0},
      {"rank_pattern", rank_pattern},
      {"alpha_pattern", json::object()},
      // A regex string is re.fullmatch-ed against full module names: only the language-model modules exported
      // (a leaf-name list would also hit the towers' Gemma4ClippableLinear, which PEFT cannot wrap). An empty list,
      // not null, when only experts are targeted: null would make PEFT fall back to its gemma4 defaults.
      {"target_modules", regex.empty() ? json::array() : json(regex)},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"use_rslora", false},
      {"use_dora", false},
      {"auto_mapping", nullptr},
  };
  if (!params.empty()) c["target_parameters"] = params;
  return c;
}

Result<PeftExportSummary> export_peft_adapter(const PeftExportOptions& options) {
  G4_ASSIGN_OR_RETURN(std::unique_ptr<dcp::Checkpoint> ckpt, dcp::Checkpoint::open(options.adapter));
  const std::string where = ckpt->iteration_dir().string();
  PeftExportSummary summary;
  summary.iteration_dir = ckpt->iteration_dir();
  G4_ASSIGN_OR_RETURN(LoraSettings settings, read_lora_settings(ckpt->iteration_dir(), options.settings));
  convert::ExportConfigOptions eo;
  eo.config_file = options.config_file;
  eo.reference_hf = options.reference_hf;
  G4_ASSIGN_OR_RETURN(convert::ExportConfig exported, convert::select_export_config(*ckpt, eo));
  const gemma4::ModelConfig& config = exported.config;
  summary.warnings = exported.warnings;
  const std::string prefix = convert::language_prefix_or(*ckpt, config.form == gemma4::ModelForm::kConditional);
  G4_ASSIGN_OR_RETURN(convert::ConversionPlan plan, convert::build_plan(config, {}, prefix));
  G4_ASSIGN_OR_RETURN(AdapterLayout layout, derive_adapter_layout(*ckpt, plan, config, settings));

  // One line per reason, naming the first module and how many more.
  std::map<std::string, std::vector<std::string>> inexact;
  for (const AdapterLayout::Inexact& x : layout.inexact) inexact[x.why].push_back(x.module);
  for (const auto& [why, modules] : inexact) {
    const std::string line = "LoRA on " + join_modules(modules) + ": " + why + ", so no PEFT adapter reproduces the trained model";
    if (!options.allow_inexact) return Status::invalid_argument(where + ": " + line + " (--allow-inexact exports it anyway)");
    summary.warnings.push_back(where + ": " + line + "; exported anyway because of --allow-inexact");
  }
  G4_RETURN_IF_ERROR(check_adapters(*ckpt, layout, settings, summary.warnings));

  std::string base_model;
  if (options.reference_hf) base_model = options.reference_hf->string();
  else if (settings.pretrained_checkpoint) base_model = settings.pretrained_checkpoint->string();
  G4_ASSIGN_OR_RETURN(json adapter_config, adapter_config_json(layout, settings, base_model));

  std::vector<OutTensor> outs;
  std::vector<TensorSpec> specs;
  for (size_t t = 0; t < layout.targets.size(); ++t) {
    const MegatronAdapter& ad = layout.adapters[layout.targets[t].adapter];
    for (bool b : {false, true}) {
      outs.push_back({t, b});
      const DType stored = b ? ad.b_dtype : ad.a_dtype;
      specs.push_back({layout.targets[t].key_prefix + (b ? ".lora_B.weight" : ".lora_A.weight"), options.dtype.value_or(stored),
                       peft_shape(layout, outs.back())});
    }
  }

  // A tensor's bytes are built once and kept until its last chunk is written.
  std::mutex mutex;
  std::map<size_t, std::shared_ptr<std::vector<std::byte>>> built;
  std::vector<uint64_t> written(specs.size(), 0);
  TensorFill fill = [&](size_t i, uint64_t offset, std::span<std::byte> out) -> Status {
    std::shared_ptr<std::vector<std::byte>> bytes;
    {
      std::lock_guard lock(mutex);
      if (auto it = built.find(i); it != built.end()) bytes = it->second;
    }
    if (!bytes) {
      G4_ASSIGN_OR_RETURN(std::vector<float> values, peft_values(*ckpt, layout, outs[i]));
      bytes = std::make_shared<std::vector<std::byte>>(values.size() * dtype_size(specs[i].dtype));
      from_f32(specs[i].dtype, values.data(), bytes->data(), values.size());
    }
    std::memcpy(out.data(), bytes->data() + offset, out.size());
    std::lock_guard lock(mutex);
    if ((written[i] += out.size()) >= specs[i].nbytes()) built.erase(i);
    else built[i] = bytes;
    return {};
  };

  OutputPolicy policy = options.output;
  policy.protect(options.adapter);
  policy.protect(ckpt->iteration_dir());
  if (options.reference_hf) policy.protect(*options.reference_hf);
  if (options.config_file) policy.protect(*options.config_file);
  G4_ASSIGN_OR_RETURN(OutputDir out, policy.directory(options.out, looks_like_peft_adapter_dir));
  uint64_t total = 0;
  for (const TensorSpec& s : specs) total += s.nbytes();
  auto write_all = [&]() -> Status {
    ThreadPool pool(options.threads);
    SafetensorsWriteOptions wo;
    wo.pool = &pool;
    if (options.progress.update) wo.on_progress = [&](uint64_t b, size_t n) { options.progress.update(b, total, n, specs.size()); };
    G4_RETURN_IF_ERROR(write_safetensors_file(out.file(kAdapterWeightsFile), specs, fill, wo));
    G4_RETURN_IF_ERROR(write_file_synced(out.file(kAdapterConfigFile), adapter_config.dump(2) + "\n"));
    return out.commit();
  };
  G4_RETURN_IF_ERROR(out.in_user_terms(write_all()));

  summary.family = std::string(plan.table->family);
  summary.form = std::string(gemma4::form_name(config.form));
  summary.adapters = layout.adapters.size();
  summary.targets = layout.targets.size();
  summary.tensors = specs.size();
  summary.bytes = total;
  summary.adapter_config = std::move(adapter_config);
  return summary;
}

}  // namespace g4::lora
