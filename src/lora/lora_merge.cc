#include "lora/lora_merge.h"

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <mutex>

#include "convert/mcore2hf.h"
#include "convert/mcore_files.h"
#include "lora/lora_delta.h"
#include "lora/peft_export.h"
#include "runtime/dcp/checkpoint.h"
#include "runtime/finite_scan.h"
#include "runtime/output_dir.h"
#include "runtime/safetensors_set.h"
#include "runtime/safetensors_writer.h"
#include "runtime/thread_pool.h"

namespace g4::lora {
namespace fs = std::filesystem;

namespace {

// Factors in use, loaded once by the first chunk of a merged tensor that needs them (others of the same tensor
// wait for that load, other tensors' loads proceed) and dropped when the tensor's last byte is written.
class FactorCache {
 public:
  using Loaded = Result<std::shared_ptr<const PeftFactors>>;
  explicit FactorCache(const PeftAdapter& adapter) : adapter_(adapter) {}
  Loaded get(size_t delta) {
    std::shared_future<Loaded> pending;
    std::optional<std::promise<Loaded>> mine;
    {
      std::lock_guard lock(mutex_);
      auto it = loading_.find(delta);
      if (it == loading_.end()) {
        mine.emplace();
        it = loading_.emplace(delta, mine->get_future().share()).first;
      }
      pending = it->second;
    }
    if (mine) {
      Result<PeftFactors> f = adapter_.factors(delta);
      if (f.ok()) mine->set_value(std::make_shared<const PeftFactors>(std::move(f).value()));
      else mine->set_value(f.status());
    }
    return pending.get();
  }
  void done(size_t delta) {
    std::lock_guard lock(mutex_);
    loading_.erase(delta);
  }

 private:
  const PeftAdapter& adapter_;
  std::mutex mutex_;
  std::map<size_t, std::shared_future<Loaded>> loading_;
};

// One tensor of the output: where its base bytes are and which delta (if any) changes it.
struct OutTensor {
  const SafetensorsSet::Entry* base = nullptr;
  std::optional<size_t> delta;
};

// Checks a delta against the base tensor it targets.
Status check_delta(const PeftAdapter& adapter, const PeftDelta& d, const SafetensorsSet& base, const fs::path& base_dir) {
  const std::string adapter_file = (adapter.dir() / kAdapterWeightsFile).string();
  const SafetensorsSet::Entry* e = base.find(d.tensor);
  if (!e)
    return Status::not_found(adapter_file + ": tensor '" + d.key_a + "' changes '" + d.tensor + "', which the base checkpoint " +
                             base_dir.string() + " does not have");
  const Shape& s = e->info->shape;
  const bool ok = d.experts == 0 ? s == Shape{d.out, d.in}
                                 : s == Shape{d.experts, d.out, d.in} || (d.experts == 1 && s == Shape{d.out, d.in});
  if (!ok) {
    const std::string want = d.experts == 0 ? shape_to_string({d.out, d.in}) : shape_to_string({d.experts, d.out, d.in});
    return Status::mismatch(e->file->path() + ": tensor '" + d.tensor + "' has shape " + shape_to_string(s) + ", but " + adapter_file +
                            " ('" + d.key_a + "', rank " + std::to_string(d.rank) + ") changes a " + want + " weight");
  }
  if (!mergeable_dtype(e->info->dtype))
    return Status::not_supported(e->file->path() + ": tensor '" + d.tensor + "' is " + std::string(dtype_name(e->info->dtype)) +
                                 "; lora-merge writes merged weights only in BF16, F16 or F32");
  return {};
}

}  // namespace

Result<LoraMergeSummary> merge_into_hf(const PeftAdapter& adapter, const fs::path& base_hf, const fs::path& out_dir,
                                       const MergeWriteOptions& options) {
  G4_ASSIGN_OR_RETURN(SafetensorsSet base, SafetensorsSet::open_dir(base_hf));
  if (!base.issues().empty()) return Status::corruption(base_hf.string() + ": " + base.issues().front());
  for (const PeftDelta& d : adapter.deltas()) G4_RETURN_IF_ERROR(check_delta(adapter, d, base, base_hf));

  // Output order: the base's own files and, within each, its tensor order; or one list for new shards.
  struct File {
    fs::path name;  // relative to the checkpoint directory
    std::vector<OutTensor> tensors;
  };
  std::vector<File> files;
  auto out_tensor = [&](const SafetensorsSet::Entry* e) {
    OutTensor t{e, std::nullopt};
    if (const PeftDelta* d = adapter.find(e->info->name)) t.delta = static_cast<size_t>(d - adapter.deltas().data());
    return t;
  };
  if (options.max_shard_bytes) {
    files.push_back({});
    for (const auto& [name, entry] : base.tensors()) files.back().tensors.push_back(out_tensor(&entry));
  } else {
    for (const auto& f : base.files()) {
      File out{fs::path(f->path()).lexically_relative(base_hf), {}};
      for (const TensorInfo& t : f->tensors()) out.tensors.push_back(out_tensor(base.find(t.name)));
      files.push_back(std::move(out));
    }
  }

  LoraMergeSummary summary;
  uint64_t total = 0;
  size_t total_tensors = 0;
  for (const File& f : files) {
    for (const OutTensor& t : f.tensors) total += t.base->info->nbytes();
    total_tensors += f.tensors.size();
  }
  FactorCache cache(adapter);
  ThreadPool pool(options.threads);
  uint64_t bytes_before = 0;
  size_t tensors_before = 0;
  for (const File& f : files) {
    std::vector<TensorSpec> specs;
    for (const OutTensor& t : f.tensors) specs.push_back({t.base->info->name, t.base->info->dtype, t.base->info->shape});
    std::vector<std::unique_ptr<std::atomic<uint64_t>>> written(specs.size());
    for (auto& w : written) w = std::make_unique<std::atomic<uint64_t>>(0);
    TensorFill fill = [&](size_t i, uint64_t offset, std::span<std::byte> out) -> Status {
      const OutTensor& t = f.tensors[i];
      std::span<const std::byte> src = base.data(*t.base).subspan(offset, out.size());
      if (!t.delta) {
        std::memcpy(out.data(), src.data(), src.size());  // untouched: byte for byte
        t.base->file->release_range(src);
        return {};
      }
      const PeftDelta& d = adapter.deltas()[*t.delta];
      G4_ASSIGN_OR_RETURN(std::shared_ptr<const PeftFactors> factors, cache.get(*t.delta));
      const DeltaFactors df{factors->a.data(), factors->b.data(), std::max<int64_t>(d.experts, 1), d.rank, d.in, d.out,
                            static_cast<float>(d.scale)};
      const DType dtype = t.base->info->dtype;
      if (uint64_t bad = merge_elements(dtype, src, out, offset / dtype_size(dtype), df); bad != 0)
        return Status::invalid_argument(t.base->file->path() + ": tensor '" + d.tensor + "': merging " + (adapter.dir() / kAdapterWeightsFile).string() +
                                        " ('" + d.key_a + "') gives " + std::to_string(bad) + " NaN/Inf values");
      t.base->file->release_range(src);
      if (written[i]->fetch_add(out.size()) + out.size() == specs[i].nbytes()) cache.done(*t.delta);
      return {};
    };
    SafetensorsWriteOptions write_options;
    write_options.pool = &pool;
    if (options.progress.update)
      write_options.on_progress = [&](uint64_t bytes, size_t n) { options.progress.update(bytes_before + bytes, total, tensors_before + n, total_tensors); };
    if (options.max_shard_bytes) {
      write_options.max_shard_bytes = *options.max_shard_bytes;
      G4_RETURN_IF_ERROR(write_safetensors_checkpoint(out_dir, specs, fill, write_options));
    } else {
      std::error_code ec;
      fs::create_directories((out_dir / f.name).parent_path(), ec);
      if (ec) return Status::io_error((out_dir / f.name).parent_path().string() + ": cannot create: " + ec.message());
      G4_RETURN_IF_ERROR(write_safetensors_file(out_dir / f.name, specs, fill, write_options));
    }
    for (const OutTensor& t : f.tensors) {
      bytes_before += t.base->info->nbytes();
      ++tensors_before;
      summary.merged += t.delta ? 1 : 0;
    }
  }
  summary.tensors = tensors_before;
  summary.bytes = total;

  // The index (same names, files, dtypes and shapes, so the base's own is right), config.json and side files.
  std::error_code ec;
  if (!options.max_shard_bytes && base.sharded()) {
    fs::copy_file(base_hf / kSafetensorsIndexFile, out_dir / kSafetensorsIndexFile, ec);
    if (ec) return Status::io_error((base_hf / kSafetensorsIndexFile).string() + ": cannot copy: " + ec.message());
  }
  fs::copy_file(base_hf / "config.json", out_dir / "config.json", ec);
  if (ec) return Status::io_error((base_hf / "config.json").string() + ": cannot copy: " + ec.message());
  G4_RETURN_IF_ERROR(convert::copy_hf_assets(base_hf, out_dir));
  return summary;
}

namespace {

// Errors about the scratch copies name what the user gave instead: the scratch directory is gone by then.
Status in_input_terms(const Status& status, const std::vector<std::pair<fs::path, std::string>>& scratch_names) {
  if (status.ok()) return status;
  std::string msg = status.message();
  for (const auto& [path, shown] : scratch_names) {
    const std::string from = path.string();
    for (size_t at = msg.find(from); at != std::string::npos; at = msg.find(from, at + shown.size())) msg.replace(at, from.size(), shown);
  }
  return Status(status.code(), msg);
}

bool is_hf_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / "config.json", ec) &&
         (fs::exists(dir / kSafetensorsSingleFile, ec) || fs::exists(dir / kSafetensorsIndexFile, ec));
}

}  // namespace

Result<LoraMergeSummary> lora_merge(const LoraMergeOptions& options) {
  OutputPolicy policy = options.output;
  policy.protect(options.adapter);
  policy.protect(options.base);
  if (options.config_file) policy.protect(*options.config_file);
  G4_RETURN_IF_ERROR(policy.check(options.out));

  std::error_code ec;
  const bool peft_adapter = fs::exists(options.adapter / kAdapterConfigFile, ec);
  if (peft_adapter && (options.rank || options.alpha || options.allow_inexact))
    return Status::invalid_argument(options.adapter.string() + " is a PEFT adapter (it has " + kAdapterConfigFile +
                                    "): --rank, --alpha and --allow-inexact apply only to a Megatron adapter checkpoint");
  const bool hf_base = is_hf_dir(options.base);
  if (!hf_base && !fs::is_directory(options.base, ec)) return Status::not_found(options.base.string() + ": no such directory");

  LoraMergeSummary summary;
  summary.adapter_kind = peft_adapter ? "peft" : "megatron";
  summary.base_kind = hf_base ? "hf" : "megatron";
  // Conversions on the way go to a private scratch directory, removed at the end.
  std::optional<OutputDir> scratch;
  if (!peft_adapter || !hf_base) {
    G4_ASSIGN_OR_RETURN(OutputDir s, policy.scratch("g4convert-lora-merge"));
    scratch.emplace(std::move(s));
  }
  fs::path base_hf = options.base;
  if (!hf_base) {
    convert::Mcore2HfOptions to_hf;
    to_hf.mcore = options.base;
    to_hf.out = scratch->file("base-hf");
    to_hf.config_file = options.config_file;
    if (options.max_shard_bytes) to_hf.max_shard_bytes = *options.max_shard_bytes;
    to_hf.threads = options.threads;
    to_hf.output = OutputPolicy(false, options.output.notice());
    G4_ASSIGN_OR_RETURN(convert::ConvertSummary converted, convert::mcore2hf(to_hf));
    for (std::string& w : converted.warnings) summary.warnings.push_back(options.base.string() + ": " + w);
    base_hf = to_hf.out;
  }
  fs::path adapter_dir = options.adapter;
  if (!peft_adapter) {
    PeftExportOptions to_peft;
    to_peft.adapter = options.adapter;
    to_peft.out = scratch->file("adapter-peft");
    to_peft.reference_hf = base_hf;  // the base's config decides the layout
    to_peft.config_file = options.config_file;
    to_peft.dtype = DType::kF32;     // exact: bf16/fp16 factors widen losslessly
    to_peft.settings.rank = options.rank;
    to_peft.settings.alpha = options.alpha;
    to_peft.allow_inexact = options.allow_inexact;
    to_peft.output = OutputPolicy(false, options.output.notice());
    to_peft.threads = options.threads;
    G4_ASSIGN_OR_RETURN(PeftExportSummary exported, export_peft_adapter(to_peft));
    for (std::string& w : exported.warnings) summary.warnings.push_back(options.adapter.string() + ": " + w);
    adapter_dir = to_peft.out;
  }
  std::vector<std::pair<fs::path, std::string>> scratch_names;
  if (!peft_adapter) scratch_names.emplace_back(adapter_dir, options.adapter.string() + " (as exported to PEFT)");
  if (!hf_base) scratch_names.emplace_back(base_hf, options.base.string() + " (as converted to HF)");
  Result<PeftAdapter> opened = PeftAdapter::open(adapter_dir);
  if (!opened.ok()) return in_input_terms(opened.status(), scratch_names);
  const PeftAdapter& adapter = *opened;

  G4_ASSIGN_OR_RETURN(OutputDir out, policy.directory(options.out, looks_like_hf_checkpoint_dir));
  MergeWriteOptions write;
  // A converted base already has the requested shards; keep them.
  if (hf_base) write.max_shard_bytes = options.max_shard_bytes;
  write.threads = options.threads;
  write.progress = options.progress;
  Result<LoraMergeSummary> merged = merge_into_hf(adapter, base_hf, out.temp_path(), write);
  if (!merged.ok()) return in_input_terms(out.in_user_terms(merged.status()), scratch_names);
  G4_RETURN_IF_ERROR(out.in_user_terms(out.commit()));
  summary.tensors = merged->tensors;
  summary.merged = merged->merged;
  summary.bytes = merged->bytes;
  return summary;
}

}  // namespace g4::lora
