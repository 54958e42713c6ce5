#include "convert/mcore_files.h"

#include <cmath>
#include <charconv>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "convert/text_mode.h"
#include "runtime/output_dir.h"
#include "runtime/torch/torch_save.h"

namespace g4::convert {
namespace fs = std::filesystem;
using gemma4::LayerType;
using nlohmann::json;
using torch::PyPtr;

namespace {

// run_config.yaml: run_config_writer.cc.

Status write_train_state(const fs::path& path) {
  // Megatron-Bridge 0.6.2's TrainState.state_dict() (training/state.py): 0-dim tensors, int64 counters, float64
  // flops, bool flags, in this order.
  static const int64_t zero_i64 = 0;
  static const double zero_f64 = 0.0;
  static const uint8_t false_u8 = 0;
  auto bytes = [](const auto& v) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(&v), sizeof v); };
  torch::TorchSaveWriter w;
  std::vector<std::pair<PyPtr, PyPtr>> items;
  for (const char* k : {"step", "consumed_train_samples", "skipped_train_samples", "consumed_valid_samples"})
    items.push_back({torch::py_str(k), w.tensor(DType::kI64, {}, bytes(zero_i64))});
  items.push_back({torch::py_str("floating_point_operations_so_far"), w.tensor(DType::kF64, {}, bytes(zero_f64))});
  for (const char* k : {"do_train", "do_valid", "do_test"}) items.push_back({torch::py_str(k), w.tensor(DType::kBool, {}, bytes(false_u8))});
  return w.write(path, *torch::py_dict(std::move(items)), path.stem().string());
}

// The common state dict of a weights-only checkpoint (§1.2 "Content of the common dict"), the same whichever
// layout stores it.
PyPtr common_state() {
  PyPtr content = torch::py_dict({{torch::py_str("singleton_local_shards"), torch::py_bool(false)},
                                  {torch::py_str("chained_optim_avoid_prefix"), torch::py_bool(true)}});
  return torch::py_dict({{torch::py_str("checkpoint_version"), torch::py_float(3.0)},
                         {torch::py_str("iteration"), torch::py_int(0)},
                         {torch::py_str("content_metadata"), content}});
}

bool is_asset(const fs::path& p) {
  const std::string name = p.filename().string(), ext = p.extension().string();
  if (name == "config.json" || name == "model.safetensors.index.json" || name.starts_with(".")) return false;
  return ext == ".json" || ext == ".jinja" || ext == ".model" || ext == ".txt" || ext == ".tiktoken";
}

}  // namespace

dcp::BytesToWrite common_state_item() {
  return {kCommonStateKey, [](torch::ZipWriter& zip) {
            torch::TorchSaveWriter w;
            return w.write_into(zip, *torch::py_list({common_state()}), "archive");  // torch.save to a BytesIO
          }};
}

std::string iteration_dir_name(IterationLayout layout) { return layout == IterationLayout::kRelease ? "release" : "iter_0000000"; }

Status copy_hf_assets(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return {};  // nothing to copy (e.g. a checkpoint Megatron wrote without assets)
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    if (!entry.is_regular_file() || !is_asset(entry.path())) continue;
    fs::create_directories(to, ec);
    if (ec) return Status::io_error(to.string() + ": cannot create: " + ec.message());
    fs::copy_file(entry.path(), to / entry.path().filename(), fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::io_error(entry.path().string() + ": cannot copy: " + ec.message());
  }
  if (ec) return Status::io_error(from.string() + ": cannot list: " + ec.message());
  return {};
}

Status write_megatron_side_files(const fs::path& root, const fs::path& iter, const gemma4::ModelConfig& config,
                                 IterationLayout layout, DType params_dtype, CommonStateLayout common, int64_t pad_vocab,
                                 bool text_mode) {
  // json.dump(asdict(CheckpointingConfig)) with Python's separators. megatron-core 0.19 has the 2 fields (and
  // drops unknown keys when reading); <= 0.18 has 4, the common_backend pair defaulted, so both parse either.
  const bool pt = common == CommonStateLayout::kCommonPt;
  G4_RETURN_IF_ERROR(write_file_synced(iter / "metadata.json",
                                       pt ? "{\"sharded_backend\": \"torch_dist\", \"sharded_backend_version\": 1, "
                                            "\"common_backend\": \"torch\", \"common_backend_version\": 1}"
                                          : "{\"sharded_backend\": \"torch_dist\", \"sharded_backend_version\": 1}"));
  if (pt) {
    torch::TorchSaveWriter w;
    G4_RETURN_IF_ERROR(w.write(iter / "common.pt", *common_state(), "common"));
  }
  G4_RETURN_IF_ERROR(write_file_synced(iter / "run_config.yaml", run_config_yaml(text_mode ? text_model_config(config) : config, params_dtype, pad_vocab)));
  G4_RETURN_IF_ERROR(write_file_synced(iter / kHfConfigFile, gemma4::to_hf_json(config).dump(2) + "\n"));
  G4_RETURN_IF_ERROR(write_train_state(iter / "train_state.pt"));
  if (layout == IterationLayout::kBridge) G4_RETURN_IF_ERROR(write_train_state(root / "latest_train_state.pt"));
  return write_file_synced(root / "latest_checkpointed_iteration.txt", layout == IterationLayout::kRelease ? "release" : "0");
}

}  // namespace g4::convert
