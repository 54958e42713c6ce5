// verify --adapter (issue 11): the Megatron forward applies Megatron-Bridge's adapters where MB's LoRALinear
// does, the HF forward applies a PEFT adapter as PEFT does, and a faithful export passes while a misplaced row,
// expert or rank fails at the layer and block where it starts.
//
// The synthetic adapters are written here with our DCP writer under MB's keys (lora-peft.md A.1) for tiny
// checkpoints converted by hf2mcore. Their HF form is derived here too, independently of lora-export (the
// per-group QKV split, fc1's [gate; up], experts as they are), so the Megatron side is checked without the export;
// the CLI tests then run lora-export's output through the same comparison.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "convert/hf2mcore.h"
#include "forward/forward_input.h"
#include "forward/mcore_adapters.h"
#include "lora/peft_export.h"
#include "runtime/dcp/dcp_writer.h"
#include "test_support.h"
#include "verify/verify.h"

namespace g4::verify {
namespace {

namespace fs = std::filesystem;
using forward::LowRank;
using testing::ScratchDir;

const char* kIds = "2,17,99,3,55,23,11,7,42,64,5,31,88,19,73,26";
constexpr int64_t kRank = 3;
constexpr double kAlpha = 6;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

// Deterministic values in [-scale, scale), rounded to bf16 (the adapters are stored bf16, as MB trains them).
float value(uint64_t seed, uint64_t i, float scale) {
  uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (i + 1) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31, x *= 0xD6E8FEB86659FD93ull, x ^= x >> 32;
  return forward::round_to_bf16(static_cast<float>((static_cast<double>(x >> 11) / 9007199254740992.0 * 2 - 1) * scale));
}

// In-memory LoRA deltas for the HF forward, by full HF tensor name: the test's own HF form of the adapters.
class MapSource final : public forward::AdapterSource {
 public:
  std::map<std::string, LowRank> deltas;
  Result<std::shared_ptr<const LowRank>> delta(const std::string& t) const override {
    auto it = deltas.find(t);
    if (it == deltas.end()) return std::shared_ptr<const LowRank>();
    return std::make_shared<const LowRank>(it->second);
  }
};

struct SynthOptions {
  std::vector<std::string> modules{"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};  // leaf names
  bool per_expert = false;  // per-expert adapters (else one shared adapter in every slot)
  bool legacy = false;      // shared expert adapters without the E axis
  std::string stray;        // the key of an extra adapter A on a module no LoRA wraps
  bool pretrained = true;   // run_config.yaml names the base as checkpoint.pretrained_checkpoint
};

// Rows [first, first + n) of B [out, r] as a new [n, r] factor (A shared).
LowRank rows_of(const LowRank& d, const std::vector<std::pair<int64_t, int64_t>>& runs) {
  LowRank o = d;
  o.b.clear();
  o.out = 0;
  for (auto [first, n] : runs) {
    o.b.insert(o.b.end(), d.b.begin() + first * d.rank, d.b.begin() + (first + n) * d.rank);
    o.out += n;
  }
  return o;
}

// Writes an adapter-only MB checkpoint for the base `mcore` into `out` (run_config.yaml: MB's peft: section and
// checkpoint.pretrained_checkpoint), and returns the same adapters in HF form.
MapSource write_adapters(const fs::path& mcore, const fs::path& out, const SynthOptions& so) {
  MapSource hf;
  auto base = forward::McoreWeights::open(mcore);
  auto ckpt = dcp::Checkpoint::open(mcore);
  EXPECT_TRUE(base.ok() && ckpt.ok());
  if (!base.ok() || !ckpt.ok()) return hf;
  const gemma4::TextConfig& cfg = base->config().text;
  const std::string hp = base->config().text_prefix() + "layers.";
  struct Global {
    Shape shape;
    std::vector<float> v;
  };
  std::map<std::string, Global> tensors;
  uint64_t seed = 0;
  auto leaf_of = [](const std::string& m) { return m.substr(m.rfind('.') + 1); };
  // (layer or null for the model level, module): E2B's PLE model projection, then every layer's linears.
  std::vector<std::pair<const gemma4::LayerSpec*, std::string>> todo;
  if (cfg.has_ple()) todo.push_back({nullptr, "per_layer_model_proj"});
  for (const gemma4::LayerSpec& s : cfg.layers) {
    std::vector<std::string> modules{"self_attention.linear_qkv", "self_attention.linear_proj"};
    if (s.has_moe)
      modules.insert(modules.end(), {"mlp.shared_experts.linear_fc1", "mlp.shared_experts.linear_fc2", "mlp.router",
                                     "mlp.experts.experts.linear_fc1", "mlp.experts.experts.linear_fc2"});
    else
      modules.insert(modules.end(), {"mlp.linear_fc1", "mlp.linear_fc2"});
    if (s.has_ple) modules.insert(modules.end(), {"per_layer_input_gate", "per_layer_projection"});
    for (const std::string& module : modules) todo.push_back({&s, module});
  }
  {
    for (const auto& [layer, module] : todo) {
      if (std::find(so.modules.begin(), so.modules.end(), leaf_of(module)) == so.modules.end()) continue;
      const gemma4::LayerSpec& s = layer ? *layer : cfg.layers[0];
      const std::string name = layer ? "decoder.layers." + std::to_string(s.index) + "." + module : module;
      auto w = base->shape(name + ".weight");
      EXPECT_TRUE(w.ok()) << name;
      if (!w.ok()) return hf;
      const bool expert = module.starts_with("mlp.experts.");
      const int64_t E = expert ? (*w)[0] : 0, slots = expert && !so.legacy ? E : 0;
      LowRank d;
      d.rank = kRank, d.out = (*w)[w->size() - 2], d.in = w->back(), d.scale = kAlpha / kRank;
      d.experts = expert ? E : 0;
      const int64_t n = std::max<int64_t>(d.experts, 1);
      d.a.resize(static_cast<size_t>(n * kRank * d.in));
      d.b.resize(static_cast<size_t>(n * d.out * kRank));
      const uint64_t sa = seed++, sb = seed++;
      for (int64_t e = 0; e < n; ++e) {  // shared mode: the same values in every slot
        const int64_t from = so.per_expert ? e : 0;
        for (int64_t i = 0; i < kRank * d.in; ++i) d.a[static_cast<size_t>(e * kRank * d.in + i)] = value(sa, static_cast<uint64_t>(from * kRank * d.in + i), 0.5f);
        for (int64_t i = 0; i < d.out * kRank; ++i) d.b[static_cast<size_t>(e * d.out * kRank + i)] = value(sb, static_cast<uint64_t>(from * d.out * kRank + i), 0.05f);
      }
      // QKV B rows MB never trains stay zero: the V slot of K=V layers, K and V of KV-shared layers.
      const int64_t hd = s.head_dim, ng = s.kv_heads, per = cfg.num_attention_heads / std::max<int64_t>(ng, 1);
      if (module.ends_with("linear_qkv"))
        for (int64_t g = 0; g < ng; ++g)
          for (int64_t row = 0; row < 2 * hd; ++row) {
            const bool k_row = row < hd;
            if (s.kv_shared || (!k_row && s.k_eq_v))
              for (int64_t k = 0; k < kRank; ++k) d.b[static_cast<size_t>(((g * (per + 2) + per) * hd + row) * kRank + k)] = 0;
          }
      // Into the global tensors at the base weight's storage slot.
      for (const char* factor : {"in", "out"}) {
        // The base weight's slot (per-layer or stacked), its ".weight" replaced by the adapter's suffix.
        auto at = base->locate(**ckpt, name + ".weight");
        EXPECT_TRUE(at.ok());
        if (!at.ok()) return hf;
        // MB's LinearAdapter (the PLE gate and projection, plain nn.Linear) holds A and B beside the weight.
        const bool torch_linear = name.ends_with("per_layer_input_gate") || name.ends_with("per_layer_projection");
        at->key = at->key.substr(0, at->key.size() - std::strlen(".weight")) + (torch_linear ? ".linear_" : ".adapter.linear_") + factor +
                  ".weight";
        const bool is_a = factor[0] == 'i';
        Shape own = is_a ? Shape{kRank, d.in} : Shape{d.out, kRank};
        if (slots) own.insert(own.begin(), slots);
        Shape global = own;
        if (at->count) global.insert(global.begin(), at->count);
        Global& g = tensors[at->key];
        if (g.shape.empty()) g = {global, std::vector<float>(static_cast<size_t>(checked_numel(global).value_or(0)), 0.0f)};
        const std::vector<float>& src = is_a ? d.a : d.b;
        const size_t slab = static_cast<size_t>(checked_numel(own).value_or(0));
        std::copy(src.begin(), src.begin() + static_cast<std::ptrdiff_t>(slab), g.v.begin() + static_cast<std::ptrdiff_t>(at->index) * static_cast<std::ptrdiff_t>(slab));
      }
      // The HF form (PEFT's targets), derived here independently of lora-export.
      const std::string l = hp + std::to_string(s.index) + ".";
      if (module.ends_with("linear_qkv")) {
        std::vector<std::pair<int64_t, int64_t>> q, k, v;
        for (int64_t g = 0; g < ng; ++g) {
          q.push_back({g * (per + 2) * hd, per * hd});
          k.push_back({(g * (per + 2) + per) * hd, hd});
          v.push_back({(g * (per + 2) + per + 1) * hd, hd});
        }
        hf.deltas[l + "self_attn.q_proj.weight"] = rows_of(d, q);
        if (!s.kv_shared) hf.deltas[l + "self_attn.k_proj.weight"] = rows_of(d, k);
        if (!s.kv_shared && !s.k_eq_v) hf.deltas[l + "self_attn.v_proj.weight"] = rows_of(d, v);
      } else if (module.ends_with("linear_proj")) {
        hf.deltas[l + "self_attn.o_proj.weight"] = d;
      } else if (module == "mlp.linear_fc1" || module == "mlp.shared_experts.linear_fc1") {
        hf.deltas[l + "mlp.gate_proj.weight"] = rows_of(d, {{0, d.out / 2}});
        hf.deltas[l + "mlp.up_proj.weight"] = rows_of(d, {{d.out / 2, d.out / 2}});
      } else if (module == "mlp.linear_fc2" || module == "mlp.shared_experts.linear_fc2") {
        hf.deltas[l + "mlp.down_proj.weight"] = d;
      } else if (module == "mlp.experts.experts.linear_fc1") {
        hf.deltas[l + "experts.gate_up_proj"] = d;
      } else if (module == "mlp.experts.experts.linear_fc2") {
        hf.deltas[l + "experts.down_proj"] = d;
      } else if (module == "mlp.router") {
        hf.deltas[l + "router.proj.weight"] = d;
      } else if (module == "per_layer_model_proj") {
        hf.deltas[base->config().text_prefix() + "per_layer_model_projection.weight"] = d;
      } else {
        hf.deltas[l + module + ".weight"] = d;
      }
    }
  }
  if (!so.stray.empty()) tensors[so.stray] = {{kRank, cfg.hidden_size}, std::vector<float>(static_cast<size_t>(kRank * cfg.hidden_size), 0.5f)};
  std::vector<dcp::TensorToWrite> write;
  for (auto& [key, g] : tensors) {
    auto bytes = std::make_shared<std::vector<std::byte>>(g.v.size() * 2);
    from_f32(DType::kBF16, g.v.data(), bytes->data(), g.v.size());
    dcp::TensorToWrite t{key, DType::kBF16, g.shape, {}};
    t.chunks.push_back({std::vector<int64_t>(g.shape.size(), 0), g.shape, [bytes](uint64_t offset, std::span<std::byte> o) {
                          std::memcpy(o.data(), bytes->data() + offset, o.size());
                          return Status();
                        }});
    write.push_back(std::move(t));
  }
  fs::create_directories(out);
  EXPECT_TRUE(dcp::write_dcp(out, write, {}, {}).ok());
  // run_config.yaml: the base's (its model: section), with MB's peft: section and the pretrained checkpoint.
  auto base_iter = dcp::resolve_iteration_dir(mcore);
  EXPECT_TRUE(base_iter.ok());
  std::string yaml = base_iter.ok() ? testing::read_bytes(*base_iter / "run_config.yaml") : "";
  const size_t at = yaml.find("\ncheckpoint:\n");
  EXPECT_NE(at, std::string::npos);
  if (so.pretrained && at != std::string::npos)
    yaml.insert(at + std::strlen("\ncheckpoint:\n"), "  pretrained_checkpoint: " + fs::absolute(mcore).string() + "\n");
  yaml += "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: " + std::to_string(kRank) + "\n  alpha: " + std::to_string(kAlpha) +
          "\n  target_modules:\n";
  for (const std::string& m : so.modules) yaml += "  - " + m + "\n";
  yaml += std::string("  share_expert_adapters: ") + (so.per_expert ? "false" : "true") + "\n";
  testing::write_bytes(out / "run_config.yaml", yaml);
  return hf;
}

class AdapterVerify : public ::testing::Test {
 protected:
  fs::path convert(const std::string& name) {
    convert::Hf2McoreOptions o;
    o.hf = tiny(name);
    o.out = dir_ / name;
    EXPECT_TRUE(convert::hf2mcore(o).ok());
    return o.out;
  }
  // verify with the Megatron adapters read from `adapters` and `hf_side` on the HF forward.
  VerifyReport run(const std::string& name, const fs::path& mcore, const fs::path& adapters, const forward::AdapterSource* hf_side,
                   bool share_expert_adapters = true) {
    auto hf = forward::HfWeights::open(tiny(name));
    auto mc = forward::McoreWeights::open(mcore);
    auto ckpt = dcp::Checkpoint::open(adapters);
    auto in = forward::forward_input_from_ids(kIds);
    EXPECT_TRUE(hf.ok() && mc.ok() && ckpt.ok() && in.ok());
    if (!hf.ok() || !mc.ok() || !ckpt.ok() || !in.ok()) return {};
    auto mb = forward::McoreAdapters::open(*mc, std::shared_ptr<const dcp::Checkpoint>(std::move(*ckpt)), {kAlpha, share_expert_adapters});
    EXPECT_TRUE(mb.ok()) << mb.status().to_string();
    if (!mb.ok()) return {};
    auto backend = forward::make_cpu_backend(true);
    VerifyOptions o;
    o.hf_adapters = hf_side;
    o.mcore_adapters = mb->get();
    auto r = verify(*hf, *mc, *in, *backend, o);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : VerifyReport{};
  }
  static void expect_faithful(const VerifyReport& r, const std::string& what) {
    EXPECT_TRUE(r.passed) << what << ": " << (r.failures.empty() ? "" : r.failures[0]);
    EXPECT_FALSE(r.first_divergent_layer.has_value()) << what;
    for (const auto& l : r.layers) EXPECT_GE(l.residual.cosine, 0.999999) << what << " layer " << l.layer;
    for (const auto& l : r.logits) EXPECT_GE(l.metrics.cosine, 0.999999) << what;
  }
  static void expect_caught(const VerifyReport& r, int layer, const std::string& block) {
    EXPECT_FALSE(r.passed);
    ASSERT_TRUE(r.first_divergent_layer.has_value());
    EXPECT_EQ(*r.first_divergent_layer, layer);
    EXPECT_EQ(r.first_divergent_block, block);
  }
  ScratchDir dir_;
};

const std::vector<std::string> kAllModules{"linear_qkv",           "linear_proj",          "linear_fc1",          "linear_fc2",
                                           "per_layer_input_gate", "per_layer_projection", "per_layer_model_proj"};

TEST_F(AdapterVerify, MegatronAdaptersMatchTheirIndependentHfFormOnDenseKvSharedAndCausalModels) {
  for (const char* name : {"tiny-31b", "tiny-e4b", "tiny-e2b"}) {
    const fs::path m = convert(name);
    SynthOptions so;
    so.modules = kAllModules;
    const MapSource hf = write_adapters(m, dir_ / (std::string(name) + "-lora"), so);
    expect_faithful(run(name, m, dir_ / (std::string(name) + "-lora"), &hf), name);
  }
}

TEST_F(AdapterVerify, WithoutTheHfSideTheAdaptersShowAsADivergenceAtLayerZero) {
  // The adapters are really applied on the Megatron side: the HF forward without them diverges at once.
  const fs::path m = convert("tiny-31b");
  write_adapters(m, dir_ / "lora", {});
  expect_caught(run("tiny-31b", m, dir_ / "lora", nullptr), 0, "attention");
}

TEST_F(AdapterVerify, TheModelLevelPleProjectionAdapterIsAppliedOnBothSides) {
  // E2B's per_layer_model_proj is outside every layer: its LoRA must reach the per-layer inputs on both sides.
  const fs::path m = convert("tiny-e2b");
  SynthOptions so;
  so.modules = {"per_layer_model_proj"};
  MapSource hf = write_adapters(m, dir_ / "lora", so);
  ASSERT_EQ(hf.deltas.size(), 1u);
  expect_faithful(run("tiny-e2b", m, dir_ / "lora", &hf), "per_layer_model_proj");
  hf.deltas.clear();
  expect_caught(run("tiny-e2b", m, dir_ / "lora", &hf), 0, "ple");
}

TEST_F(AdapterVerify, ExpertAdaptersSharedPerExpertAndLegacyMatchTheirHfFormOn26B) {
  const fs::path m = convert("tiny-26b-a4b");
  for (int mode = 0; mode < 3; ++mode) {
    SynthOptions so;
    so.modules = {"linear_qkv", "linear_fc1", "linear_fc2"};  // not linear_proj: see the post-norm test
    so.per_expert = mode == 1;
    so.legacy = mode == 2;
    const fs::path dir = dir_ / ("lora" + std::to_string(mode));
    const MapSource hf = write_adapters(m, dir, so);
    expect_faithful(run("tiny-26b-a4b", m, dir, &hf, !so.per_expert), "mode " + std::to_string(mode));
  }
}

TEST_F(AdapterVerify, SwappedQAndKRowsOfOneLayerFailAtThatLayersAttention) {
  const fs::path m = convert("tiny-31b");
  MapSource hf = write_adapters(m, dir_ / "lora", {});
  // Layer 3: the first k row and the first q row of its B exchanged in the HF form.
  const std::string p = "model.language_model.layers.3.self_attn.";
  LowRank& q = hf.deltas.at(p + "q_proj.weight");
  LowRank& k = hf.deltas.at(p + "k_proj.weight");
  for (int64_t r = 0; r < kRank; ++r) std::swap(q.b[static_cast<size_t>(r)], k.b[static_cast<size_t>(r)]);
  expect_caught(run("tiny-31b", m, dir_ / "lora", &hf), 3, "attention");
}

TEST_F(AdapterVerify, ExpertRankOrderTransposedFailsAtThatLayersExperts) {
  const fs::path m = convert("tiny-26b-a4b");
  SynthOptions so;
  so.modules = {"linear_fc1"};
  so.per_expert = true;
  MapSource hf = write_adapters(m, dir_ / "lora", so);
  // Layer 2's expert fc1 A read expert-major where it is rank-major: rows e·r+k taken as k·E+e.
  LowRank& d = hf.deltas.at("model.language_model.layers.2.experts.gate_up_proj");
  std::vector<float> a = d.a;
  const int64_t E = d.experts;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t k = 0; k < kRank; ++k)
      std::copy(d.a.begin() + (k * E + e) * d.in, d.a.begin() + (k * E + e + 1) * d.in, a.begin() + (e * kRank + k) * d.in);
  d.a = a;
  expect_caught(run("tiny-26b-a4b", m, dir_ / "lora", &hf, false), 2, "experts");
}

TEST_F(AdapterVerify, LinearProjAdapterOf26BGoesAfterThePostNormSoAnOprojLoraDiverges) {
  // TERowParallelLinearLayerNorm: MB trains norm(W_o·x) + s·B·A·x; an HF o_proj LoRA is norm((W_o + s·B·A)·x).
  const fs::path m = convert("tiny-26b-a4b");
  SynthOptions so;
  so.modules = {"linear_proj"};
  const MapSource hf = write_adapters(m, dir_ / "lora", so);
  expect_caught(run("tiny-26b-a4b", m, dir_ / "lora", &hf), 0, "attention");
}

TEST_F(AdapterVerify, DenseLinearProjAdapterIsBeforeItsSeparatePostNorm) {
  const fs::path m = convert("tiny-31b");
  SynthOptions so;
  so.modules = {"linear_proj"};
  const MapSource hf = write_adapters(m, dir_ / "lora", so);
  expect_faithful(run("tiny-31b", m, dir_ / "lora", &hf), "tiny-31b linear_proj");
}

TEST_F(AdapterVerify, RouterAdapterSeesTheRawResidualSoARouterProjLoraDiverges) {
  // LoRATopKRouter feeds the adapter the router's input, the raw residual; HF's router.proj sees it normed
  // and scaled. No PEFT router LoRA reproduces it.
  const fs::path m = convert("tiny-26b-a4b");
  SynthOptions so;
  so.modules = {"router"};
  const MapSource hf = write_adapters(m, dir_ / "lora", so);
  expect_caught(run("tiny-26b-a4b", m, dir_ / "lora", &hf), 0, "router");
}

TEST_F(AdapterVerify, AnAdapterOnAModuleTheForwardDoesNotWrapIsRefusedNamingItsKey) {
  const fs::path m = convert("tiny-31b");
  SynthOptions so;
  so.stray = "language_model.decoder.final_layernorm.adapter.linear_in.weight";
  write_adapters(m, dir_ / "lora", so);
  auto mc = forward::McoreWeights::open(m);
  auto ckpt = dcp::Checkpoint::open(dir_ / "lora");
  ASSERT_TRUE(mc.ok() && ckpt.ok());
  auto mb = forward::McoreAdapters::open(*mc, std::shared_ptr<const dcp::Checkpoint>(std::move(*ckpt)), {kAlpha, true});
  ASSERT_FALSE(mb.ok());
  EXPECT_NE(mb.status().message().find(so.stray), std::string::npos) << mb.status().message();
  // And the base checkpoint, which holds no adapter, is no adapter checkpoint.
  auto base_ckpt = dcp::Checkpoint::open(m);
  ASSERT_TRUE(base_ckpt.ok());
  auto none = forward::McoreAdapters::open(*mc, std::shared_ptr<const dcp::Checkpoint>(std::move(*base_ckpt)), {kAlpha, true});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no LoRA adapter"), std::string::npos) << none.status().message();
}


// ---- verify --adapter through the CLI: lora-export's output (or a PEFT directory) against the Megatron adapters.

// Runs verify with `args` after "--hf <tiny name>", writing the JSON report; returns the exit code.
int verify_cli(const std::string& name, const std::string& args, const fs::path& report, nlohmann::json* json, std::string* out) {
  const int rc = testing::run_g4convert("verify --hf " + tiny(name).string() + " " + args + " --report " + report.string() + " --force", out);
  if (json && fs::exists(report)) *json = nlohmann::json::parse(testing::read_bytes(report));
  return rc;
}

// Exports `adapters` with lora-export into `out` (fp32).
void export_peft(const fs::path& adapters, const std::string& name, const fs::path& out, bool allow_inexact = false) {
  lora::PeftExportOptions e;
  e.adapter = adapters;
  e.out = out;
  e.reference_hf = tiny(name);
  e.allow_inexact = allow_inexact;
  auto r = lora::export_peft_adapter(e);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
}

// Edits f32 tensor `key` of a safetensors file in place: edit(values, shape).
void edit_safetensors(const fs::path& file, const std::string& key, const std::function<void(std::vector<float>&, const Shape&)>& edit) {
  std::string bytes = testing::read_bytes(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  ASSERT_TRUE(header.contains(key)) << key << " not in " << file;
  const auto& t = header[key];
  ASSERT_EQ(t["dtype"], "F32");
  const size_t begin = 8 + n + t["data_offsets"][0].get<size_t>(), end = 8 + n + t["data_offsets"][1].get<size_t>();
  std::vector<float> v((end - begin) / 4);
  std::memcpy(v.data(), bytes.data() + begin, end - begin);
  edit(v, t["shape"].get<Shape>());
  std::memcpy(bytes.data() + begin, v.data(), end - begin);
  testing::write_bytes(file, bytes);
}

TEST_F(AdapterVerify, CliFaithfulExportPassesOnDenseKvSharedAndMoeModelsWithTheBaseFromRunConfig) {
  struct Case {
    const char* model;
    SynthOptions so;
  };
  SynthOptions dense, moe_shared, moe_per_expert;
  dense.modules = kAllModules;
  moe_shared.modules = moe_per_expert.modules = {"linear_qkv", "linear_fc1", "linear_fc2"};
  moe_per_expert.per_expert = true;
  for (const Case& c : {Case{"tiny-31b", dense}, Case{"tiny-e4b", dense}, Case{"tiny-26b-a4b", moe_shared}, Case{"tiny-26b-a4b", moe_per_expert}}) {
    const std::string what = std::string(c.model) + (c.so.per_expert ? " per-expert" : "");
    const fs::path m = dir_ / c.model;
    if (!fs::exists(m)) convert(c.model);
    const fs::path lora = dir_ / (what + "-lora");
    write_adapters(m, lora, c.so);
    nlohmann::json j;
    std::string out;
    EXPECT_EQ(verify_cli(c.model, "--adapter '" + lora.string() + "'", dir_ / "r.json", &j, &out), 0) << what << "\n" << out;
    EXPECT_TRUE(j.value("passed", false)) << what;
    EXPECT_EQ(j["adapter"]["megatron_base"], fs::absolute(m).string()) << what;
    for (const auto& l : j["layers"]) EXPECT_GE(l["residual"]["cosine"].get<double>(), 0.999999) << what;
  }
}

TEST_F(AdapterVerify, CliMcoreNamesTheBaseOfAnAdapterOnlyCheckpointWithoutPretrainedCheckpoint) {
  const fs::path m = convert("tiny-31b");
  SynthOptions so;
  so.pretrained = false;
  write_adapters(m, dir_ / "lora", so);
  std::string out;
  EXPECT_EQ(verify_cli("tiny-31b", "--adapter " + (dir_ / "lora").string(), dir_ / "r.json", nullptr, &out), 2) << out;
  EXPECT_NE(out.find("give --mcore"), std::string::npos) << out;
  nlohmann::json j;
  EXPECT_EQ(verify_cli("tiny-31b", "--adapter " + (dir_ / "lora").string() + " --mcore " + m.string(), dir_ / "r.json", &j, &out), 0) << out;
  EXPECT_EQ(j["adapter"]["megatron_base_from"], "--mcore");
}

TEST_F(AdapterVerify, CliPeftDirectoryWithQAndKRowsSwappedFailsAtThatLayersAttention) {
  const fs::path m = convert("tiny-31b");
  write_adapters(m, dir_ / "lora", {});
  export_peft(dir_ / "lora", "tiny-31b", dir_ / "peft");
  std::string out;
  // Given directly, a PEFT directory needs the Megatron checkpoint holding the same adapters.
  EXPECT_EQ(verify_cli("tiny-31b", "--adapter " + (dir_ / "peft").string(), dir_ / "r.json", nullptr, &out), 2) << out;
  nlohmann::json j;
  const std::string args = "--adapter " + (dir_ / "peft").string() + " --mcore " + (dir_ / "lora").string();
  EXPECT_EQ(verify_cli("tiny-31b", args, dir_ / "r.json", &j, &out), 0) << "the untouched export\n" << out;
  // Layer 3's first q row and first k row of B exchanged.
  const std::string p = "base_model.model.model.language_model.layers.3.self_attn.";
  std::vector<float> q_row;
  edit_safetensors(dir_ / "peft" / lora::kAdapterWeightsFile, p + "q_proj.lora_B.weight", [&](std::vector<float>& v, const Shape& s) {
    q_row.assign(v.begin(), v.begin() + s[1]);
  });
  edit_safetensors(dir_ / "peft" / lora::kAdapterWeightsFile, p + "k_proj.lora_B.weight", [&](std::vector<float>& v, const Shape& s) {
    std::vector<float> k_row(v.begin(), v.begin() + s[1]);
    std::copy(q_row.begin(), q_row.end(), v.begin());
    q_row = k_row;
  });
  edit_safetensors(dir_ / "peft" / lora::kAdapterWeightsFile, p + "q_proj.lora_B.weight",
                   [&](std::vector<float>& v, const Shape&) { std::copy(q_row.begin(), q_row.end(), v.begin()); });
  EXPECT_EQ(verify_cli("tiny-31b", args, dir_ / "r.json", &j, &out), 1) << out;
  EXPECT_EQ(j["first_divergent_layer"], 3) << out;
  EXPECT_EQ(j["first_divergent_block"], "attention") << out;
}

TEST_F(AdapterVerify, CliPeftExpertColumnsPackedExpertMajorFailAtThatLayersExperts) {
  const fs::path m = convert("tiny-26b-a4b");
  SynthOptions so;
  so.modules = {"linear_fc1", "linear_fc2"};
  so.per_expert = true;
  write_adapters(m, dir_ / "lora", so);
  export_peft(dir_ / "lora", "tiny-26b-a4b", dir_ / "peft");
  // Layer 4's gate_up lora_B [2I, E·r] with its columns in MB's expert-major order (e·r+k) instead of k·E+e.
  edit_safetensors(dir_ / "peft" / lora::kAdapterWeightsFile, "base_model.model.model.language_model.layers.4.experts.base_layer.lora_B.weight",
                   [&](std::vector<float>& v, const Shape& s) {
                     const int64_t cols = s[1], E = cols / kRank;
                     std::vector<float> w(v.size());
                     for (int64_t row = 0; row < s[0]; ++row)
                       for (int64_t e = 0; e < E; ++e)
                         for (int64_t k = 0; k < kRank; ++k) w[static_cast<size_t>(row * cols + e * kRank + k)] = v[static_cast<size_t>(row * cols + k * E + e)];
                     v = w;
                   });
  nlohmann::json j;
  std::string out;
  EXPECT_EQ(verify_cli("tiny-26b-a4b", "--adapter " + (dir_ / "peft").string() + " --mcore " + (dir_ / "lora").string(), dir_ / "r.json", &j, &out), 1)
      << out;
  EXPECT_EQ(j["first_divergent_layer"], 4) << out;
  EXPECT_EQ(j["first_divergent_block"], "experts") << out;
}

TEST_F(AdapterVerify, CliLinearProjOf26BNeedsAllowInexactThenShowsItsDivergenceAtLayerZeroAttention) {
  const fs::path m = convert("tiny-26b-a4b");
  SynthOptions so;
  so.modules = {"linear_qkv", "linear_proj"};
  write_adapters(m, dir_ / "lora", so);
  std::string out;
  EXPECT_EQ(verify_cli("tiny-26b-a4b", "--adapter " + (dir_ / "lora").string(), dir_ / "r.json", nullptr, &out), 2) << out;
  EXPECT_NE(out.find("--allow-inexact"), std::string::npos) << out;
  nlohmann::json j;
  EXPECT_EQ(verify_cli("tiny-26b-a4b", "--adapter " + (dir_ / "lora").string() + " --allow-inexact", dir_ / "r.json", &j, &out), 1) << out;
  EXPECT_FALSE(j.value("passed", true));
  EXPECT_EQ(j["first_divergent_layer"], 0) << out;
  EXPECT_EQ(j["first_divergent_block"], "attention") << out;
  EXPECT_FALSE(j["adapter"]["warnings"].empty()) << out;
}

}  // namespace
}  // namespace g4::verify
