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

Result<const SafetensorsSet::Entry*> HfWeights::find(const std::string& name) const {
  const SafetensorsSet::Entry* e = set_.find(prefix_ + name);
  if (!e) return Status::not_found("tensor '" + prefix_ + name + "' is missing");
  return e;
}

void HfWeights::convert(const SafetensorsSet::Entry& e, uint64_t first, uint64_t count, float* out, const Precision& p) const {
  const size_t elem = dtype_size(e.info->dtype);
  const std::byte* src = set_.data(e).data() + first * elem;
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = static_cast<int64_t>((count + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const uint64_t begin = static_cast<uint64_t>(b) * kBlock, n = std::min<uint64_t>(kBlock, count - begin);
    to_f32(e.info->dtype, src + begin * elem, out + begin, n);
    if (p.bf16())  // the model cast: a bf16 model holds bf16 weights, also when the checkpoint is f32
      for (uint64_t i = 0; i < n; ++i) out[begin + i] = round_to_bf16(out[begin + i]);
  }
  // Streaming: drop the mapped pages we just read, so resident memory is the f32 copy, not the file.
  e.file->release_range(std::span<const std::byte>(src, count * elem));
}

Result<Mat> HfWeights::matrix(const std::string& name, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(const SafetensorsSet::Entry* e, find(name));
  const Shape& s = e->info->shape;
  if (s.size() != 2) return Status::mismatch("tensor '" + e->info->name + "' is not 2-D: " + shape_to_string(s));
  Mat m(s[0], s[1]);
  convert(*e, 0, m.v.size(), m.v.data(), p);
  return m;
}

Result<std::vector<float>> HfWeights::vector(const std::string& name, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(const SafetensorsSet::Entry* e, find(name));
  std::vector<float> v(e->info->numel());
  convert(*e, 0, v.size(), v.data(), p);
  return v;
}

Result<Mat> HfWeights::slice(const std::string& name, int64_t index, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(const SafetensorsSet::Entry* e, find(name));
  const Shape& s = e->info->shape;
  if (s.size() != 3 || index < 0 || index >= s[0])
    return Status::mismatch("tensor '" + e->info->name + "': no slice " + std::to_string(index) + " in " + shape_to_string(s));
  Mat m(s[1], s[2]);
  convert(*e, static_cast<uint64_t>(index) * m.v.size(), m.v.size(), m.v.data(), p);
  return m;
}

Result<Mat> HfWeights::rows(const std::string& name, const std::vector<int64_t>& ids, const Precision& p) const {
  G4_ASSIGN_OR_RETURN(const SafetensorsSet::Entry* e, find(name));
  const Shape& s = e->info->shape;
  if (s.size() != 2) return Status::mismatch("tensor '" + e->info->name + "' is not 2-D");
  Mat m(static_cast<int64_t>(ids.size()), s[1]);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= s[0])
      return Status::invalid_argument("token id " + std::to_string(ids[i]) + " is outside '" + e->info->name + "' (" +
                                      std::to_string(s[0]) + " rows)");
    convert(*e, static_cast<uint64_t>(ids[i] * s[1]), static_cast<uint64_t>(s[1]), m.row(static_cast<int64_t>(i)), p);
  }
  return m;
}

Status HfWeights::for_each_row_block(const std::string& name, int64_t block_rows, const Precision& p,
                                     const std::function<Status(int64_t, const Mat&)>& fn) const {
  G4_ASSIGN_OR_RETURN(const SafetensorsSet::Entry* e, find(name));
  const Shape& s = e->info->shape;
  if (s.size() != 2) return Status::mismatch("tensor '" + e->info->name + "' is not 2-D");
  for (int64_t first = 0; first < s[0]; first += block_rows) {
    int64_t n = std::min(block_rows, s[0] - first);
    Mat block(n, s[1]);
    convert(*e, static_cast<uint64_t>(first * s[1]), block.v.size(), block.v.data(), p);
    G4_RETURN_IF_ERROR(fn(first, block));  // convert() already released this block's mapped pages
  }
  return {};
}

}  // namespace g4::forward
