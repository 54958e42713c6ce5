// inspect for Megatron-Core torch_dist checkpoints: the plan of the config's family says which keys, shapes
// and `_extra_state` objects must be there; everything else is reported, collect-all style.
#include <map>
#include <optional>
#include <set>

#include "convert/conversion_plan.h"
#include "convert/mcore_keys.h"
#include "convert/export_config.h"
#include "convert/mcore_files.h"
#include "convert/v_slot_drift.h"
#include "convert/vocab_padding.h"
#include "gemma4/presets.h"
#include "inspect/hf_inspect.h"
#include "runtime/finite_scan.h"

namespace g4 {
namespace fs = std::filesystem;
using convert::ConversionPlan;
using dcp::is_training_state_key;
using convert::fused_weights_marker;
using convert::language_prefix_or;
using convert::tower_tensors;

namespace {

// Storage records that point past the end of their .distcp file (a truncated or edited checkpoint), found
// without reading any data: one stat per file. One problem per tensor or byte item, naming its first bad record.
void check_storage_bounds(const dcp::Checkpoint& ckpt, InspectReport& r) {
  std::map<std::string, uint64_t> sizes;
  auto outside = [&](const dcp::StorageLocation& at) -> std::optional<std::string> {
    auto [it, fresh] = sizes.try_emplace(at.relative_path, 0);
    if (fresh) {
      std::error_code ec;
      it->second = fs::file_size(ckpt.iteration_dir() / at.relative_path, ec);
      if (ec) it->second = 0;
    }
    if (at.offset <= it->second && at.length <= it->second - at.offset) return std::nullopt;
    return at.relative_path + " bytes [" + std::to_string(at.offset) + ", +" + std::to_string(at.length) + ") of a " +
           std::to_string(it->second) + "-byte file";
  };
  for (const auto& [key, entry] : ckpt.metadata().tensors) {
    size_t bad = 0;
    std::string first;
    for (const auto& c : entry.chunks)
      if (auto why = outside(c.where); why && bad++ == 0) first = *why;
    if (bad)
      r.problems.push_back({"index", "'" + key + "': " + std::to_string(bad) + " of " + std::to_string(entry.chunks.size()) +
                                         " chunks lie outside their .distcp file (truncated?), first " + first});
  }
  for (const auto& [key, where] : ckpt.metadata().byte_items)
    if (auto why = outside(where)) r.problems.push_back({"index", "'" + key + "': stored outside its .distcp file (truncated?): " + *why});
}

}  // namespace

bool is_hf_checkpoint(const fs::path& dir) { return fs::exists(dir / "config.json"); }

Result<InspectReport> inspect_mcore(const fs::path& dir, const InspectOptions& options, const fs::path& config_path) {
  G4_ASSIGN_OR_RETURN(std::unique_ptr<dcp::Checkpoint> ckpt, dcp::Checkpoint::open(dir));
  InspectReport r;
  r.format = "megatron";
  r.dir = dir;
  r.iteration_dir = ckpt->iteration_dir();
  const fs::path iter = ckpt->iteration_dir();
  r.written_by = fs::exists(iter / convert::kHfConfigFile) ? "g4convert" : fs::exists(iter / "run_config.yaml") ? "Megatron-Bridge" : "Megatron";
  std::set<std::string> files;
  for (const auto& [key, entry] : ckpt->metadata().tensors) {
    for (const auto& c : entry.chunks) files.insert(c.where.relative_path);
    r.chunks += entry.chunks.size();
    if (is_training_state_key(key)) continue;
    ++r.tensors;
    r.bytes += checked_numel(entry.shape).value_or(0) * dtype_size(entry.dtype);
    ++r.dtypes[std::string(dtype_name(entry.dtype))];
    if (!entry.chunk_problem.empty()) r.problems.push_back({"index", entry.chunk_problem});  // checked when .metadata was read
  }
  r.files = files.size();
  check_storage_bounds(*ckpt, r);
  for (const auto& [key, where] : ckpt->metadata().byte_items) r.extra_state_objects += key.find("_extra_state") != std::string::npos;
  if (!fs::exists(iter / "metadata.json")) r.problems.push_back({"missing", "metadata.json is missing: MCore does not treat the directory as a distributed checkpoint"});
  if (!fs::exists(iter / "common.pt") && !ckpt->metadata().byte_items.count("common_state/shard_0_1"))
    r.problems.push_back({"missing", "neither common.pt nor the common_state object is present"});

  // The same choice of config as mcore2hf's (export_config.h); a checkpoint's own that cannot be read is a problem.
  convert::ExportConfigOptions config_options;
  if (!config_path.empty()) config_options.config_file = config_path;
  config_options.disagreement_is_reported = true;  // --config is checked against the tensors whatever the checkpoint says
  auto selected = convert::select_export_config(*ckpt, config_options);
  if (!selected.ok() && config_path.empty() && selected.status().code() == ErrorCode::kNotFound) {  // nothing describes it
    r.problems.push_back({"config", selected.status().message()});
    return r;
  }
  if (!selected.ok()) return selected.status();
  if (!selected->disagreement.empty()) r.problems.push_back({"config", selected->disagreement});
  r.config = std::move(selected->config);
  r.structure = gemma4::structure_of(r.config.text);
  r.variant = gemma4::identify_variant(r.config.text);

  if (const std::string fused = fused_weights_marker(*ckpt); !fused.empty())
    r.problems.push_back({"fused", "'" + fused + "': written by Megatron-Bridge before 2026-07-09 with the router and shared-expert pre-norm folded into the weights"});
  std::vector<std::pair<std::string, Shape>> towers;
  if (r.config.form == gemma4::ModelForm::kConditional) towers = tower_tensors(*ckpt);
  r.tower_tensors = towers.size();
  const bool conditional = r.config.form == gemma4::ModelForm::kConditional;
  const std::string prefix = language_prefix_or(*ckpt, conditional);
  G4_ASSIGN_OR_RETURN(ConversionPlan plan, convert::build_plan(r.config, towers, prefix));
  r.layer_keys = plan.layer_keys == convert::LayerKeys::kPerLayer ? "per-layer" : "stacked";

  std::set<std::string> mapped;
  for (const auto& p : plan.params) {
    const dcp::TensorEntry* e = ckpt->find(p.slot.key);
    if (!e) {
      if (mapped.insert(p.slot.key).second) r.problems.push_back({"missing", "'" + p.slot.key + "' (" + p.name + ") is missing"});
      continue;
    }
    if (mapped.insert(p.slot.key).second) {
      Shape global = p.slot.axes;
      global.insert(global.end(), p.shape.begin(), p.shape.end());
      if (!ckpt->stored_shape(p.slot.key, p.slot.axes, p.shape, p.vocab_rows).ok())  // vocabulary padding is no problem
        r.problems.push_back({"shape", "'" + p.slot.key + "' has shape " + shape_to_string(e->shape) + ", the config implies " + shape_to_string(global)});
    }
  }
  r.text_tensors = mapped.size() - towers.size();
  for (const auto& [key, entry] : ckpt->metadata().tensors)
    if (!mapped.count(key) && !is_training_state_key(key))
      r.problems.push_back({"unexpected", "'" + key + "' is not part of the Gemma 4 mapping"});
  const bool structurally_ok = r.problems.empty();
  // Padding rows a training run changed are not exported (mcore2hf warns): reported, reading only those rows.
  for (const auto& p : plan.params) {
    if (!p.vocab_rows || !structurally_ok) continue;
    auto padding = convert::scan_vocab_padding(*ckpt, p.slot.key, p.shape);
    if (!padding.ok()) r.problems.push_back({"index", padding.status().message()});
    else if (padding->nonzero_rows > 0) r.problems.push_back({"vocab-padding", convert::describe_nonzero_padding(*ckpt, p.slot.key, *padding)});
  }
  for (const auto& item : plan.extra_state)
    if (item.requested && !ckpt->metadata().byte_items.count(item.key))
      r.problems.push_back({"extra-state", "'" + item.key + "' is missing: Megatron-Bridge's loader requests it (default strictness fails)"});

  // The V slot of K=V layers, and with --scan every value.
  const auto gathers = convert::invert_plan(plan);
  for (size_t s = 0; s < plan.hf.size() && structurally_ok; ++s) {
    if (gathers[s].duplicates.empty()) continue;
    const auto& p = plan.params[gathers[s].canonical[0].param];
    auto slab = ckpt->read_slab(p.slot.key, p.slot.index, p.slot.axes, p.shape, p.vocab_rows);
    if (!slab.ok()) { r.problems.push_back({"index", slab.status().message()}); continue; }
    if (auto w = convert::v_slot_drift(plan, plan.hf[s], gathers[s], **slab)) r.problems.push_back({"v-drift", *w});
  }
  if (options.scan && structurally_ok) {
    r.scanned = true;
    std::set<std::pair<std::string, std::vector<int64_t>>> seen;
    for (const auto& p : plan.params) {
      if (!seen.insert({p.slot.key, p.slot.index}).second) continue;
      auto slab = ckpt->read_slab(p.slot.key, p.slot.index, p.slot.axes, p.shape, p.vocab_rows);
      if (!slab.ok()) { r.problems.push_back({"index", slab.status().message()}); continue; }
      NonFiniteCount bad;
      for (const auto& part : (*slab)->parts) {
        const NonFiniteCount c = count_non_finite((*slab)->dtype, part.bytes);
        bad.nan += c.nan;
        bad.inf += c.inf;
        ckpt->release(part.bytes);
      }
      if (bad.any())
        r.problems.push_back({"non-finite", "'" + p.slot.key + "' (" + p.name + ") holds " + std::to_string(bad.nan) + " NaN and " +
                                                std::to_string(bad.inf) + " Inf values"});
    }
  }
  return r;
}

}  // namespace g4
