#include "inspect/hf_inspect.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <set>

#include "gemma4/hf_tensors.h"
#include "gemma4/presets.h"
#include "runtime/finite_scan.h"
#include "runtime/safetensors_set.h"

namespace g4 {
namespace fs = std::filesystem;
using namespace gemma4;

namespace {

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

bool is_weight_dtype(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

void check_expected(const SafetensorsSet& set, const std::vector<HfTensor>& expected, InspectReport& r) {
  for (const HfTensor& e : expected) {
    const SafetensorsSet::Entry* found = set.find(e.name);
    if (!found) {
      if (!e.optional && !set.unreadable(e.name))  // an unreadable one is listed with its file's problem
        r.problems.push_back({"missing", "tensor '" + e.name + "' " + shape_to_string(e.shape) + " is missing"});
      continue;
    }
    ++r.text_tensors;
    if (e.optional && e.layer >= 0) ++r.redundant_shared_kv;
    const TensorInfo& t = *found->info;
    if (t.shape != e.shape) {
      std::string why;
      if (e.layer >= 0) {
        const LayerSpec& s = r.config.text.layers[e.layer];
        why = " (layer " + std::to_string(e.layer) + " is " + std::string(layer_type_name(s.type)) + ": head_dim " +
              std::to_string(s.head_dim) + ", " + std::to_string(s.kv_heads) + " KV heads, MLP width " +
              std::to_string(s.mlp_width) + ")";
      }
      r.problems.push_back({"shape", found->file->path() + ": tensor '" + e.name + "': shape " + shape_to_string(t.shape) +
                                         ", expected " + shape_to_string(e.shape) + why});
    }
    if (!is_weight_dtype(t.dtype))
      r.problems.push_back({"dtype", found->file->path() + ": tensor '" + e.name + "': dtype " +
                                         std::string(dtype_name(t.dtype)) + " is not BF16, F16 or F32"});
  }
}

void check_unexpected(const SafetensorsSet& set, const std::vector<HfTensor>& expected, InspectReport& r) {
  std::set<std::string, std::less<>> known;
  for (const HfTensor& e : expected) known.insert(e.name);
  const bool vision = !r.config.vision_config.is_null(), audio = !r.config.audio_config.is_null();
  size_t vision_count = 0, audio_count = 0, foreign_prefix = 0;
  const std::string other_prefix = r.config.form == ModelForm::kCausal ? "model.language_model." : "model.layers.";
  for (const auto& [name, entry] : set.tensors()) {
    if (known.count(name)) continue;
    const bool is_vision = starts_with_any(name, tower_prefixes(true));
    const bool is_audio = starts_with_any(name, tower_prefixes(false));
    if (r.config.form == ModelForm::kConditional && ((is_vision && vision) || (is_audio && audio))) {
      ++r.tower_tensors;
      (is_vision ? vision_count : audio_count)++;
      continue;
    }
    if (name.rfind(other_prefix, 0) == 0) ++foreign_prefix;
    std::string why = (is_vision || is_audio) ? " (a tower tensor, but config.json has no " +
                                                    std::string(is_vision ? "vision_config" : "audio_config") + ")"
                                              : "";
    r.problems.push_back({"unexpected", entry.file->path() + ": unexpected tensor '" + name + "'" + why});
  }
  if (foreign_prefix > 0)
    r.problems.push_back({"unexpected", std::to_string(foreign_prefix) + " tensors use the '" + other_prefix + "' prefix of " +
                                            (r.config.form == ModelForm::kCausal ? "Gemma4ForConditionalGeneration"
                                                                                 : "Gemma4ForCausalLM") +
                                            ", but config.json describes " +
                                            (r.config.form == ModelForm::kCausal ? "Gemma4ForCausalLM" : "Gemma4ForConditionalGeneration")});
  auto none_readable = [&](bool vision_side) {  // and none in a file or entry that could not be read
    for (const std::string& p : tower_prefixes(vision_side))
      if (set.unreadable_under(p)) return false;
    return true;
  };
  if (vision && vision_count == 0 && none_readable(true))
    r.problems.push_back({"tower", "config.json has a vision_config but the checkpoint has no model.vision_tower.* tensors"});
  if (audio && audio_count == 0 && none_readable(false))
    r.problems.push_back({"tower", "config.json has an audio_config but the checkpoint has no model.audio_tower.* tensors"});
}

void scan_values(const SafetensorsSet& set, const InspectReport& base, ThreadPool* pool, std::vector<InspectProblem>& out) {
  std::vector<const SafetensorsSet::Entry*> entries;
  for (const auto& [name, e] : set.tensors()) entries.push_back(&e);
  std::mutex mu;
  auto scan_one = [&](size_t i) -> Status {
    const auto& e = *entries[i];
    // Chunked, releasing pages behind us: resident memory stays near threads × chunk, not the model.
    constexpr size_t kChunk = 64u << 20;
    const auto bytes = set.data(e);
    NonFiniteCount c;
    for (size_t off = 0; off < bytes.size(); off += kChunk) {
      auto part = bytes.subspan(off, std::min(kChunk, bytes.size() - off));
      NonFiniteCount p = count_non_finite(e.info->dtype, part);
      c.nan += p.nan;
      c.inf += p.inf;
      e.file->release_range(part);
    }
    if (c.any()) {
      std::lock_guard<std::mutex> lock(mu);
      out.push_back({"non-finite", e.file->path() + ": tensor '" + e.info->name + "' has " + std::to_string(c.nan) +
                                       " NaN and " + std::to_string(c.inf) + " Inf values"});
    }
    return {};
  };
  if (pool) {
    (void)parallel_for_status(*pool, entries.size(), pool->size() * 2, scan_one);
  } else {
    for (size_t i = 0; i < entries.size(); ++i) (void)scan_one(i);
  }
  const auto* head = set.find("lm_head.weight");
  const auto* embed = set.find(base.config.text_prefix() + "embed_tokens.weight");
  if (base.config.text.tie_word_embeddings && head && embed) {
    auto a = set.data(*head), b = set.data(*embed);
    if (head->info->dtype != embed->info->dtype || a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size()) != 0)
      out.push_back({"tied-head", "lm_head.weight differs from embed_tokens.weight, but tie_word_embeddings is true "
                                  "(transformers would silently use the embedding)"});
  }
}

}  // namespace

Result<InspectReport> inspect_hf(const fs::path& dir, const InspectOptions& options) {
  InspectReport r;
  r.dir = dir;
  G4_ASSIGN_OR_RETURN(r.config, load_config((dir / "config.json").string()));
  r.variant = identify_variant(r.config.text);
  r.structure = structure_of(r.config.text);
  // Collect-all: a broken file or tensor entry is a problem like any other, and the rest is still checked.
  G4_ASSIGN_OR_RETURN(SafetensorsSet set, SafetensorsSet::open_dir(dir, HeaderCheck::kCollect));
  for (const std::string& p : set.problems()) r.problems.push_back({"safetensors", p});
  r.files = set.files().size();
  r.tensors = set.tensors().size();
  r.bytes = set.total_bytes();
  for (const auto& [name, e] : set.tensors()) r.dtypes[std::string(dtype_name(e.info->dtype))]++;
  for (const std::string& issue : set.issues())
    r.problems.push_back({issue.rfind("duplicate", 0) == 0 ? "duplicate" : "index", issue});

  const std::vector<HfTensor> expected = hf_text_tensors(r.config);
  check_expected(set, expected, r);
  check_unexpected(set, expected, r);
  if (options.scan) {
    r.scanned = true;
    scan_values(set, r, options.pool, r.problems);
  }
  return r;
}

std::vector<std::string> schedule_lines(const TextConfig& t) {
  auto describe = [&](const LayerSpec& s) {
    std::string d = std::string(s.type == LayerType::kFull ? "full   " : "sliding") + "  hd " + std::to_string(s.head_dim) +
                    "  kv " + std::to_string(s.kv_heads) + "  mlp " + std::to_string(s.mlp_width);
    if (s.k_eq_v) d += "  K=V";
    if (s.kv_shared) d += "  shares K/V of layer " + std::to_string(s.kv_source);
    if (s.stores_kv) d += "  (K/V source)";
    if (s.has_moe) d += "  moe " + std::to_string(*t.num_experts) + "x" + std::to_string(*t.moe_intermediate_size) + " top-" +
                        std::to_string(*t.top_k_experts);
    if (s.has_ple) d += "  ple " + std::to_string(t.hidden_size_per_layer_input);
    return d;
  };
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 1; i <= t.layers.size(); ++i) {
    if (i < t.layers.size() && describe(t.layers[i]) == describe(t.layers[start])) continue;
    std::string range = std::to_string(start) + (i - 1 > start ? "-" + std::to_string(i - 1) : "");
    range.resize(std::max<size_t>(range.size(), 7), ' ');
    lines.push_back(range + describe(t.layers[start]));
    start = i;
  }
  return lines;
}

}  // namespace g4
