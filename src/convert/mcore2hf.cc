#include "convert/mcore2hf.h"

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>

#include "convert/conversion_plan.h"
#include "convert/element_copy.h"
#include "convert/export_config.h"
#include "convert/mcore_keys.h"
#include "convert/text_mode.h"
#include "convert/v_slot_drift.h"
#include "convert/vocab_padding.h"
#include "gemma4/config.h"
#include "runtime/output_dir.h"
#include "runtime/safetensors_set.h"
#include "runtime/safetensors_writer.h"
#include "runtime/thread_pool.h"

namespace g4::convert {
namespace fs = std::filesystem;

namespace {

// Slabs in use, shared between the fills of the HF tensors that read the same parameter (q, k and v read
// one linear_qkv) and dropped when the last of them is done.
class SlabCache {
 public:
  SlabCache(const dcp::Checkpoint& ckpt, const ConversionPlan& plan, std::vector<int> consumers)
      : ckpt_(ckpt), plan_(plan), consumers_(std::move(consumers)) {}

  Result<std::shared_ptr<const dcp::Slab>> get(int param) {
    {
      std::lock_guard lock(mutex_);
      if (auto it = slabs_.find(param); it != slabs_.end()) return it->second;
    }
    const MegatronParam& p = plan_.params[param];
    G4_ASSIGN_OR_RETURN(std::shared_ptr<const dcp::Slab> slab, ckpt_.read_slab(p.slot.key, p.slot.index, p.slot.axes, p.shape, p.vocab_rows));
    std::lock_guard lock(mutex_);
    return slabs_.try_emplace(param, slab).first->second;
  }
  void done(int param) {
    std::lock_guard lock(mutex_);
    if (--consumers_[param] <= 0) slabs_.erase(param);
  }

 private:
  const dcp::Checkpoint& ckpt_;
  const ConversionPlan& plan_;
  std::mutex mutex_;
  std::vector<int> consumers_;
  std::map<int, std::shared_ptr<const dcp::Slab>> slabs_;
};

}  // namespace

Result<ConvertSummary> mcore2hf(const Mcore2HfOptions& options) {
  G4_ASSIGN_OR_RETURN(std::unique_ptr<dcp::Checkpoint> ckpt, dcp::Checkpoint::open(options.mcore));
  const std::string where = ckpt->iteration_dir().string();

  // Config: --config or the reference's, else the checkpoint's own (hf_config.json, else run_config.yaml);
  // both must agree where both exist (export_config.h).
  std::optional<SafetensorsSet> reference;
  if (options.reference_hf) {
    G4_ASSIGN_OR_RETURN(SafetensorsSet ref, SafetensorsSet::open_dir(*options.reference_hf));
    reference = std::move(ref);
  }
  G4_ASSIGN_OR_RETURN(ExportConfig selected, select_export_config(*ckpt, {options.config_file, options.reference_hf}));
  gemma4::ModelConfig config = std::move(selected.config);

  if (const std::string fused = fused_weights_marker(*ckpt); !fused.empty())
    return Status::not_supported(where + ": '" + fused + "' marks a Megatron-Bridge checkpoint from before 2026-07-09 with fused router and "
                                 "shared-expert weights (megatron-bridge-layout.md §2); it cannot be exported losslessly");

  // The language model's prefix is the checkpoint's (the config's form does not decide it): a conditional config
  // over a GPTModel is Megatron-Bridge's text mode, whose towers come from the reference; a causal config over a
  // VL checkpoint exports its language model as the causal form, without the towers.
  const bool conditional = config.form == gemma4::ModelForm::kConditional;
  const std::string prefix = language_prefix_or(*ckpt, conditional);
  std::vector<std::pair<std::string, Shape>> towers;
  if (conditional) towers = tower_tensors(*ckpt);
  G4_ASSIGN_OR_RETURN(const std::vector<std::string> reference_towers,
                      towers_from_reference(config, towers, reference ? &*reference : nullptr, where));
  G4_ASSIGN_OR_RETURN(ConversionPlan plan, build_plan(config, towers, prefix));
  G4_RETURN_IF_ERROR(check_contract(plan));
  const std::vector<HfGather> gathers = invert_plan(plan);

  // Every parameter must be stored with the config's shape (read_slab checks stacked layer axes); per-layer keys
  // of layers beyond the config's are a checkpoint the config does not describe, not a smaller model.
  if (const std::string extra = key_beyond_layers(*ckpt, plan.prefix, config.text.num_hidden_layers); !extra.empty())
    return Status::mismatch(where + ": '" + extra + "' is a layer the config does not have (it has " +
                            std::to_string(config.text.num_hidden_layers) + " layers)");
  // Anything else of the model in the checkpoint is reported.
  std::set<std::string> mapped_keys;
  for (const MegatronParam& p : plan.params) {
    if (!ckpt->find(p.slot.key)) return Status::not_found(where + ": tensor '" + p.slot.key + "' (" + p.name + ") is missing");
    mapped_keys.insert(p.slot.key);
  }
  ConvertSummary summary;
  summary.warnings = std::move(selected.warnings);
  // Vocabulary padding (Megatron-Bridge's zero rows) is not part of the HF model: only the config's rows are
  // exported, and padding rows a training run changed are reported, never dropped silently.
  for (const MegatronParam& p : plan.params) {
    if (!p.vocab_rows) continue;
    G4_ASSIGN_OR_RETURN(const VocabPadding padding, scan_vocab_padding(*ckpt, p.slot.key, p.shape));
    if (padding.nonzero_rows > 0)
      summary.warnings.push_back(describe_nonzero_padding(*ckpt, p.slot.key, padding) + "; only the vocabulary's " +
                                 std::to_string(padding.vocab) + " rows were exported");
  }
  size_t dropped_towers = 0;
  for (const auto& [key, entry] : ckpt->metadata().tensors) {
    if (mapped_keys.count(key) || dcp::is_training_state_key(key) || key.find("_extra_state") != std::string::npos) continue;
    if (!conditional && is_tower_tensor("model." + key)) ++dropped_towers;
    else summary.warnings.push_back("'" + key + "' is not part of the Gemma 4 mapping and was not exported");
  }
  if (!conditional && !prefix.empty())
    summary.warnings.push_back(where + ": the checkpoint is a VL model (keys under '" + prefix + "') and the config is causal: its language "
                               "model was written as Gemma4ForCausalLM" + (dropped_towers ? ", its " + std::to_string(dropped_towers) +
                               " tower tensors were not exported" : std::string()));
  if (!reference_towers.empty())
    summary.warnings.push_back(where + ": the checkpoint has no tower tensors (Megatron-Bridge text mode): " +
                               std::to_string(reference_towers.size()) + " were taken from " + options.reference_hf->string() +
                               " byte for byte");

  // Which HF tensors to write: the required ones; optional ones (KV-shared K/V/k_norm) only to match a
  // reference that has them.
  std::vector<size_t> emit;
  for (size_t s = 0; s < plan.hf.size(); ++s) {
    if (gathers[s].canonical.empty()) continue;
    if (plan.hf[s].optional && !(reference && reference->find(plan.hf[s].name))) continue;
    emit.push_back(s);
  }
  std::vector<TensorSpec> specs;
  std::vector<int> consumers(plan.params.size(), 0);
  for (size_t s : emit) {
    const dcp::TensorEntry* e = ckpt->find(plan.params[gathers[s].canonical[0].param].slot.key);
    specs.push_back({plan.hf[s].name, converted_dtype(e->dtype, options.dtype), plan.hf[s].shape});
    std::set<int> params;
    for (const HfGather::Ref& r : gathers[s].canonical) params.insert(r.param);
    for (int p : params) ++consumers[p];
  }

  // Towers a text-mode checkpoint lacks: the reference's tensors, after the converted ones.
  std::vector<const SafetensorsSet::Entry*> passed;
  for (const std::string& name : reference_towers) {
    passed.push_back(reference->find(name));
    specs.push_back({name, converted_dtype(passed.back()->info->dtype, options.dtype), passed.back()->info->shape});
  }

  SlabCache cache(*ckpt, plan, consumers);
  std::vector<std::unique_ptr<std::atomic<uint64_t>>> written(emit.size());
  for (auto& w : written) w = std::make_unique<std::atomic<uint64_t>>(0);
  std::mutex warn_mutex;
  TensorFill fill = [&](size_t i, uint64_t offset, std::span<std::byte> out) -> Status {
    if (i >= emit.size()) {
      const SafetensorsSet::Entry& e = *passed[i - emit.size()];
      const DType from = e.info->dtype, to = specs[i].dtype;
      const uint64_t from_es = dtype_size(from), to_es = dtype_size(to);
      std::span<const std::byte> src = reference->data(e).subspan(offset / to_es * from_es, out.size() / to_es * from_es);
      G4_RETURN_IF_ERROR(copy_elements(src, from, out, to).with_context(specs[i].name));
      e.file->release_range(src);
      if (!options.allow_non_finite) G4_RETURN_IF_ERROR(check_finite(out, to, e.file->path() + ": tensor '" + specs[i].name + "'"));
      return {};
    }
    const size_t s = emit[i];
    const HfSlot& slot = plan.hf[s];
    const HfGather& g = gathers[s];
    const DType to = specs[i].dtype;
    const uint64_t to_es = dtype_size(to), row_bytes = static_cast<uint64_t>(row_elems(slot.shape)) * to_es;
    const uint64_t end = offset + out.size();
    for (const HfGather::Ref& r : g.canonical) {
      const uint64_t r0 = static_cast<uint64_t>(r.src_row) * row_bytes, r1 = r0 + static_cast<uint64_t>(r.rows) * row_bytes;
      if (r1 <= offset || r0 >= end) continue;
      G4_ASSIGN_OR_RETURN(std::shared_ptr<const dcp::Slab> slab, cache.get(r.param));
      const uint64_t b0 = std::max(offset, r0), b1 = std::min(end, r1);
      const uint64_t from_es = dtype_size(slab->dtype);
      const uint64_t first = static_cast<uint64_t>(r.dst_row) * row_elems(slot.shape) + (b0 - r0) / to_es;
      std::span<std::byte> dst = out.subspan(b0 - offset, b1 - b0);
      auto copy_part = [&](std::span<const std::byte> src, uint64_t at) -> Status {
        Status copied = copy_elements(src, slab->dtype, dst.subspan(at / from_es * to_es, src.size() / from_es * to_es), to);
        ckpt->release(src);  // streamed once: keep RSS bounded
        return copied.with_context(slot.name);
      };
      G4_RETURN_IF_ERROR(slab->visit(first * from_es, first * from_es + (b1 - b0) / to_es * from_es, copy_part));
      if (!options.allow_non_finite)
        G4_RETURN_IF_ERROR(check_finite(out.subspan(b0 - offset, b1 - b0), to, where + ": '" + plan.params[r.param].slot.key + "' (" + slot.name + ")"));
    }
    if (written[i]->fetch_add(out.size()) + out.size() == specs[i].nbytes()) {
      if (!g.duplicates.empty()) {
        G4_ASSIGN_OR_RETURN(std::shared_ptr<const dcp::Slab> slab, cache.get(g.canonical[0].param));
        if (auto warning = v_slot_drift(plan, slot, g, *slab)) {
          std::lock_guard lock(warn_mutex);
          summary.warnings.push_back(*warning);
        }
      }
      std::set<int> params;
      for (const HfGather::Ref& r : g.canonical) params.insert(r.param);
      for (int p : params) cache.done(p);
    }
    return {};
  };

  OutputPolicy policy = options.output;
  policy.protect(options.mcore);
  policy.protect(ckpt->iteration_dir());
  if (options.reference_hf) policy.protect(*options.reference_hf);
  if (options.config_file) policy.protect(*options.config_file);
  G4_ASSIGN_OR_RETURN(OutputDir out, policy.directory(options.out, looks_like_hf_checkpoint_dir));
  uint64_t total = 0;
  for (const TensorSpec& s : specs) total += s.nbytes();
  auto write_all = [&]() -> Status {
    ThreadPool pool(options.threads);
    SafetensorsWriteOptions write_options;
    write_options.max_shard_bytes = options.max_shard_bytes;
    write_options.pool = &pool;
    if (options.progress.update)
      write_options.on_progress = [&](uint64_t bytes, size_t n) { options.progress.update(bytes, total, n, specs.size()); };
    G4_RETURN_IF_ERROR(write_safetensors_checkpoint(out.temp_path(), specs, fill, write_options));

    gemma4::ModelConfig written_config = config;
    if (!specs.empty()) {
      const DType d = specs.front().dtype;
      written_config.dtype = d == DType::kF32 ? "float32" : d == DType::kF16 ? "float16" : "bfloat16";
    }
    G4_RETURN_IF_ERROR(write_file_synced(out.file("config.json"), gemma4::to_hf_json(written_config).dump(2) + "\n"));
    if (options.reference_hf) G4_RETURN_IF_ERROR(copy_hf_assets(*options.reference_hf, out.temp_path()));
    G4_RETURN_IF_ERROR(copy_hf_assets(ckpt->iteration_dir() / kTokenizerDir, out.temp_path()));
    return out.commit();
  };
  G4_RETURN_IF_ERROR(out.in_user_terms(write_all()));

  summary.family = std::string(plan.table->family);
  summary.form = std::string(gemma4::form_name(config.form));
  summary.source_tensors = ckpt->metadata().tensors.size();
  summary.target_tensors = specs.size();
  summary.bytes = total;
  summary.iteration_dir = ckpt->iteration_dir();
  return summary;
}

}  // namespace g4::convert
