// Test and benchmark tool: writes a Megatron-Bridge adapter-only LoRA checkpoint (lora-peft.md A.1) for the
// model of an HF checkpoint's config.json, with seeded random A and B on every targeted linear:
//   lora_synth --base HF_DIR --out DIR [--rank R] [--alpha A] [--targets linear_qkv,linear_proj,linear_fc1,linear_fc2]
//              [--per-expert] [--dtype bf16|fp32] [--seed N]
// Keys, stacking and per-type attention stacks as MB stores them (the adapter of `<module>.weight` at
// `<module>.adapter.linear_{in,out}.weight`, or beside it for a LinearAdapter; the storage layout of the base weight); expert adapters with a
// global E axis (identical slices unless --per-expert). B rows MB never trains stay zero: the V slot of
// attention_k_eq_v layers and the K/V rows of KV-shared layers. run_config.yaml holds MB's peft: section.
// Errors: one line on stderr, exit 2.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "convert/conversion_plan.h"
#include "gemma4/config.h"
#include "runtime/dcp/dcp_writer.h"
#include "runtime/dtype.h"

using namespace g4;
namespace fs = std::filesystem;

namespace {

struct Args {
  fs::path base, out;
  int64_t rank = 32;
  double alpha = 32;
  std::set<std::string> targets{"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};
  bool per_expert = false;
  DType dtype = DType::kBF16;
  uint64_t seed = 1;
};

// Deterministic values in [-0.05, 0.05) from (seed, tensor, element): reproducible whatever the chunking.
float value(uint64_t seed, uint64_t tensor, uint64_t element) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ (tensor + 1) * 0xBF58476D1CE4E5B9ull ^ (element + 1) * 0x94D049BB133111EBull;
  x ^= x >> 31, x *= 0xD6E8FEB86659FD93ull, x ^= x >> 32;
  return static_cast<float>(static_cast<double>(x >> 11) / 9007199254740992.0 * 0.1 - 0.05);
}

std::string leaf_module(const std::string& rule_name) {
  std::string m = rule_name.substr(0, rule_name.size() - std::strlen(".weight"));
  return m.substr(m.rfind('.') + 1);
}

// One adapter factor: the global tensor and, per slab position, which rows are zero.
struct Factor {
  dcp::TensorToWrite tensor;
  uint64_t id = 0;
};

Status run(const Args& a) {
  G4_ASSIGN_OR_RETURN(gemma4::ModelConfig config, gemma4::load_config((a.base / "config.json").string()));
  G4_ASSIGN_OR_RETURN(convert::ConversionPlan plan, convert::build_plan(config, {}));
  const gemma4::TextConfig& text = config.text;
  std::map<std::string, Factor> factors;  // by DCP key
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> zero_rows;  // B key + slab index -> [row0, row1)
  auto slab_tag = [](const std::string& key, const std::vector<int64_t>& index) {
    std::string t = key;
    for (int64_t i : index) t += "#" + std::to_string(i);
    return t;
  };
  for (const convert::MegatronParam& p : plan.params) {
    if (!p.rule || !mappings::is_linear(p.rule->parallel)) continue;
    const std::string rule_name(p.rule->megatron);
    if (!a.targets.count(leaf_module(rule_name))) continue;
    const std::string module = rule_name.substr(0, rule_name.size() - std::strlen(".weight"));
    const int64_t out = p.experts ? p.shape[1] : p.shape[0];
    const int64_t in = p.experts ? p.shape[2] : p.shape[1];
    const int64_t E = p.experts ? p.shape[0] : 0;
    const mappings::LoraKeySuffixes suffixes = mappings::lora_key_suffixes(*p.rule);
    for (const std::string_view suffix : {suffixes.a, suffixes.b}) {
      const bool is_a = suffix == suffixes.a;
      const convert::StorageSlot slot = convert::storage_slot(module + std::string(suffix), p.layer, text, plan.layer_keys, plan.prefix);
      Shape own = is_a ? Shape{a.rank, in} : Shape{out, a.rank};
      if (E) own.insert(own.begin(), E);
      Factor& f = factors[slot.key];
      if (f.tensor.fqn.empty()) {
        f.tensor.fqn = slot.key;
        f.tensor.dtype = a.dtype;
        f.tensor.shape = slot.axes;
        f.tensor.shape.insert(f.tensor.shape.end(), own.begin(), own.end());
        f.id = factors.size();
      }
      dcp::ChunkToWrite chunk;
      chunk.offsets = slot.index;
      chunk.offsets.resize(f.tensor.shape.size(), 0);
      chunk.sizes = slot.axes.empty() ? own : Shape(slot.axes.size(), 1);
      if (!slot.axes.empty()) chunk.sizes.insert(chunk.sizes.end(), own.begin(), own.end());
      if (!is_a) {
        // Rows MB never trains: a source already used in this parameter (the V-from-K slot) or absent from HF
        // (KV-shared K/V): their B rows stay at the zero init.
        std::set<int> seen;
        for (const convert::Piece& piece : p.pieces) {
          const bool untrained = piece.source >= 0 && (plan.hf[piece.source].optional || !seen.insert(piece.source).second);
          if (untrained) zero_rows[slab_tag(slot.key, slot.index)].push_back({piece.dst_row, piece.dst_row + piece.rows});
        }
      }
      const uint64_t id = f.id, seed = a.seed;
      const DType dtype = a.dtype;
      const int64_t rows = own[own.size() - 2], cols = own.back(), experts = E ? E : 1;
      const uint64_t slab_elems = static_cast<uint64_t>(experts * rows * cols);
      const uint64_t base_elem = slot.index.empty() ? 0 : static_cast<uint64_t>(slot.index[0]) * slab_elems;
      const auto zeros = zero_rows[slab_tag(slot.key, slot.index)];
      const bool shared = E && !a.per_expert;
      chunk.produce = [=](uint64_t offset, std::span<std::byte> bytes) {
        const size_t es = dtype_size(dtype);
        for (size_t k = 0; k < bytes.size() / es; ++k) {
          const uint64_t e = offset / es + k;
          const int64_t row = static_cast<int64_t>(e / static_cast<uint64_t>(cols)) % rows;
          bool zero = false;
          for (const auto& [r0, r1] : zeros) zero |= row >= r0 && row < r1;
          const uint64_t within = shared ? e % static_cast<uint64_t>(rows * cols) : e;
          const float v = zero ? 0.0f : value(seed, id, base_elem + within);
          from_f32(dtype, &v, bytes.data() + k * es, 1);
        }
        return Status();
      };
      f.tensor.chunks.push_back(std::move(chunk));
    }
  }
  if (factors.empty()) return Status::invalid_argument("no linear of " + a.base.string() + " matches the targets");
  const fs::path iter = a.out / "iter_0000001";
  fs::create_directories(iter);
  std::vector<dcp::TensorToWrite> tensors;
  for (auto& [key, f] : factors) tensors.push_back(std::move(f.tensor));
  G4_RETURN_IF_ERROR(dcp::write_dcp(iter, tensors, {}, {}));
  std::ofstream(a.out / "latest_checkpointed_iteration.txt") << "1\n";
  std::ofstream yaml(iter / "run_config.yaml");
  yaml << "checkpoint:\n  pretrained_checkpoint: " << fs::absolute(a.base).string() << "\npeft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  target_modules:\n";
  for (const std::string& t : a.targets) yaml << "  - " << t << "\n";
  yaml << "  exclude_modules: []\n  dim: " << a.rank << "\n  alpha: " << a.alpha
       << "\n  dropout: 0.0\n  dropout_position: pre\n  lora_A_init_method: xavier\n  lora_B_init_method: zero\n"
       << "  normalize_moe_lora: false\n  share_expert_adapters: " << (a.per_expert ? "false" : "true")
       << "\n  experts_shared_outer_loras: false\n";
  return yaml ? Status() : Status::io_error((iter / "run_config.yaml").string() + ": write failed");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "lora_synth: %s needs a value\n", k.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (k == "--base") a.base = next();
    else if (k == "--out") a.out = next();
    else if (k == "--rank") a.rank = std::stoll(next());
    else if (k == "--alpha") a.alpha = std::stod(next());
    else if (k == "--per-expert") a.per_expert = true;
    else if (k == "--seed") a.seed = std::stoull(next());
    else if (k == "--dtype") a.dtype = next() == "fp32" ? DType::kF32 : DType::kBF16;
    else if (k == "--targets") {
      a.targets.clear();
      std::string list = next();
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        if (comma > at) a.targets.insert(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else {
      std::fprintf(stderr, "lora_synth: unknown argument %s\n", k.c_str());
      return 2;
    }
  }
  if (a.base.empty() || a.out.empty() || a.rank < 1) {
    std::fprintf(stderr, "usage: lora_synth --base HF_DIR --out DIR [--rank R] [--alpha A] [--targets a,b] [--per-expert] [--dtype bf16|fp32] [--seed N]\n");
    return 2;
  }
  const Status s = run(a);
  if (!s.ok()) {
    std::fprintf(stderr, "lora_synth: %s\n", s.to_string().c_str());
    return 2;
  }
  return 0;
}
