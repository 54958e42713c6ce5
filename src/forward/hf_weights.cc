#include "forward/hf_weights.h"

#include "gemma4/hf_tensors.h"

namespace g4::forward {
namespace fs = std::filesystem;

HfWeights::HfWeights(gemma4::ModelConfig config, SafetensorsSet set)
    : config_(std::move(config)), set_(std::move(set)), prefix_(config_.text_prefix()) {}

Result<HfWeights> HfWeights::open(const fs::path& dir) {
  G4_ASSIGN_OR_RETURN(gemma4::ModelConfig config, gemma4::load_config((dir / "config.json").string()));
  G4_ASSIGN_OR_RETURN(SafetensorsSet set, SafetensorsSet::open_dir(dir));
  // The converters' rule: an index that contradicts its shards (duplicates, unlisted tensors) is no checkpoint.
  if (!set.issues().empty()) return Status::corruption(dir.string() + ": " + set.issues().front());
  for (const gemma4::HfTensor& t : gemma4::hf_text_tensors(config)) {
    if (t.optional) continue;
    const SafetensorsSet::Entry* e = set.find(t.name);
    if (!e) return Status::not_found(dir.string() + ": tensor '" + t.name + "' is missing (run g4convert inspect)");
    if (e->info->shape != t.shape)
      return Status::mismatch(e->file->path() + ": tensor '" + t.name + "' has shape " + shape_to_string(e->info->shape) +
                              ", the config implies " + shape_to_string(t.shape));
    if (!dtype_converts_to_f32(e->info->dtype) || !dtype_is_float(e->info->dtype))
      return Status::not_supported(e->file->path() + ": tensor '" + t.name + "' has dtype " +
                                   std::string(dtype_name(e->info->dtype)) + "; the forward reads BF16, F16, F32 and F64");
  }
  return HfWeights(std::move(config), std::move(set));
}

Result<WeightReader::Stored> HfWeights::stored(const std::string& name) const {
  const SafetensorsSet::Entry* e = set_.find(prefix_ + name);
  if (!e) return Status::not_found("tensor '" + prefix_ + name + "' is missing");
  const std::span<const std::byte> all = set_.data(*e);
  const DType dtype = e->info->dtype;
  const SafetensorsFile* file = e->file;  // owned by set_, which outlives every tensor of a forward
  auto elements = [all, dtype, file](uint64_t first, uint64_t count) -> Result<Tensor> {
    const size_t elem = dtype_size(dtype);
    const std::span<const std::byte> bytes = all.subspan(first * elem, count * elem);
    // Streaming: read ahead in large requests (a cold page cache otherwise faults in 4 KiB at a time, ~6x slower
    // than the disk streams), and the mapped pages go when the last handle does, so resident memory is in flight.
    file->will_need_range(bytes);
    auto storage = host_view(bytes.data(), bytes.size(), [file, bytes] { file->release_range(bytes); });
    return Tensor(dtype, 1, static_cast<int64_t>(count), std::move(storage));
  };
  return Stored{dtype, e->info->shape, e->info->name, std::move(elements)};
}

}  // namespace g4::forward
