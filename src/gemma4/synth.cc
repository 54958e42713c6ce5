#include "gemma4/synth.h"

#include <cmath>
#include <vector>

#include "gemma4/presets.h"
#include "runtime/output_dir.h"
#include "runtime/safetensors_writer.h"

namespace g4::gemma4 {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from the top 24 bits (exact in f32).
float unit(uint64_t bits) { return static_cast<float>(bits >> 40) * (1.0f / 8388608.0f) - 1.0f; }

constexpr float kWeightStd = 0.02f;  // transformers' initializer_range
const float kUniformHalfWidth = kWeightStd * std::sqrt(3.0f);

std::string_view dtype_torch_name(DType t) {
  switch (t) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return "float32";
  }
}

}  // namespace

uint64_t synth_name_hash(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

float synth_value(uint64_t seed, uint64_t name_hash, TensorRole role, uint64_t index) {
  uint64_t bits = splitmix64(splitmix64(seed ^ name_hash) + index);
  float u = unit(bits);
  switch (role) {
    case TensorRole::kEmbedding:
    case TensorRole::kLinear:
    case TensorRole::kExperts:
      return u * kUniformHalfWidth;
    case TensorRole::kLayerScalar:
      return 0.55f + 0.35f * u;  // [0.2, 0.9): real checkpoints hold 0.005-0.92 (pitfalls.md P20)
    case TensorRole::kNorm:
    case TensorRole::kRouterScale:
    case TensorRole::kExpertScale: {
      // 1 ± [0.1, 0.5]: never within 0.1 of 1.0.
      float magnitude = 0.1f + 0.4f * std::fabs(u);
      return (bits & 1u) ? 1.0f + magnitude : 1.0f - magnitude;
    }
  }
  return 0.0f;
}

Result<SynthSummary> synth_checkpoint(const SynthOptions& o) {
  const Preset* preset = find_preset(o.preset);
  if (!preset) {
    std::string names;
    for (const Preset& p : all_presets()) names += (names.empty() ? "" : ", ") + p.name;
    return Status::invalid_argument("unknown preset '" + o.preset + "' (choose one of: " + names + ")");
  }
  if (o.dtype != DType::kBF16 && o.dtype != DType::kF32 && o.dtype != DType::kF16)
    return Status::invalid_argument("synth writes bf16, f16 or fp32 checkpoints");
  if (o.with_shared_kv && preset->text.num_kv_shared_layers == 0)
    return Status::invalid_argument("--with-shared-kv: preset '" + o.preset + "' has no KV-shared layers");

  SynthSummary summary;
  ModelConfig& config = summary.config;
  config.form = o.form;
  G4_ASSIGN_OR_RETURN(config.text, preset_with_layers(*preset, o.layers));
  config.dtype = std::string(dtype_torch_name(o.dtype));

  std::vector<HfTensor> inventory;
  for (HfTensor& t : hf_text_tensors(config, o.with_shared_kv))
    if (!t.optional) inventory.push_back(std::move(t));
  std::vector<TensorSpec> specs;
  std::vector<uint64_t> name_hashes;
  for (const HfTensor& t : inventory) {
    specs.push_back({t.name, o.dtype, t.shape});
    name_hashes.push_back(synth_name_hash(t.name));
    summary.bytes += specs.back().nbytes();
  }
  summary.tensors = specs.size();
  summary.shards = plan_shards(specs, o.max_shard_bytes).size();

  OutputPolicy policy = o.output;
  G4_ASSIGN_OR_RETURN(OutputDir out, policy.directory(o.out, looks_like_hf_checkpoint_dir));
  const size_t elem = dtype_size(o.dtype);
  TensorFill fill = [&](size_t i, uint64_t offset, std::span<std::byte> dst) -> Status {
    const uint64_t first = offset / elem, n = dst.size() / elem;
    thread_local std::vector<float> values;
    values.resize(n);
    for (uint64_t k = 0; k < n; ++k) values[k] = synth_value(o.seed, name_hashes[i], inventory[i].role, first + k);
    from_f32(o.dtype, values.data(), dst.data(), n);
    return {};
  };
  SafetensorsWriteOptions wo;
  wo.max_shard_bytes = o.max_shard_bytes;
  wo.pool = o.pool;
  wo.chunk_bytes = 16u << 20;
  if (o.on_progress)
    wo.on_progress = [&](uint64_t bytes, size_t tensors) { o.on_progress(bytes, summary.bytes, tensors, summary.tensors); };
  auto write_all = [&]() -> Status {
    G4_RETURN_IF_ERROR(write_safetensors_checkpoint(out.temp_path(), specs, fill, wo));

    G4_RETURN_IF_ERROR(write_file_synced(out.file("config.json"), to_hf_json(config).dump(2) + "\n"));
    const TextConfig& t = config.text;
    nlohmann::json generation = {{"bos_token_id", t.bos_token_id}, {"eos_token_id", t.eos_token_id}, {"pad_token_id", t.pad_token_id}};
    G4_RETURN_IF_ERROR(write_file_synced(out.file("generation_config.json"), generation.dump(2) + "\n"));
    return out.commit();
  };
  G4_RETURN_IF_ERROR(out.in_user_terms(write_all()));
  return summary;
}

}  // namespace g4::gemma4
