// lora-export: Megatron-Bridge adapter-only checkpoints, written here with our DCP writer in MB's keys
// (lora-peft.md A.1), exported to PEFT and checked against the layout of A.3 computed independently from the
// config (per-group QKV rows, [gate; up], the e·r+k / k·E+e expert packing).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <algorithm>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "convert/conversion_plan.h"
#include "gemma4/config.h"
#include "gemma4/hf_tensors.h"
#include "lora/adapter_layout.h"
#include "lora/peft_export.h"
#include "lora/peft_pattern.h"
#include "runtime/dcp/checkpoint.h"
#include "runtime/dcp/dcp_writer.h"
#include "runtime/dtype.h"
#include "runtime/safetensors_reader.h"
#include "test_support.h"

namespace g4::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path model_dir(const std::string& name) { return source_dir() / "testdata" / name; }

gemma4::ModelConfig load(const std::string& model) {
  auto c = gemma4::load_config((model_dir(model) / "config.json").string());
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return *c;
}

// One adapter's values as MB holds them: A [r, in], B [out, r] (experts: [E, r, in] / [E, out, r]).
struct MgAdapter {
  std::vector<float> a, b;
  int64_t rank = 0, experts = 0, out = 0, in = 0;
};

struct GlobalTensor {
  Shape shape;
  std::vector<float> values;
  size_t lead = 0;  // stacked axes
  size_t split_dim = 0;  // the dim a TP split cuts (A: the rank, B: the rows), counted from the slab
};

// Options of a synthetic checkpoint.
struct SynthOptions {
  std::set<std::string> leaves{"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};
  int64_t rank = 2;
  int64_t expert_rank = 0;    // 0: rank
  bool per_expert = true;     // distinct expert slices (else identical: MB's shared mode)
  bool legacy_experts = false;  // no E axis
  int tp = 1;                 // chunks along A's rank axis and B's rows
  DType dtype = DType::kF32;
  uint32_t seed = 7;
  // Values instead of random ones: (module, is_b, expert, row, col) -> value.
  std::function<float(const std::string&, bool, int64_t, int64_t, int64_t)> value;
};

// Megatron module names (no language prefix) of every linear the options target, with their values.
struct Synth {
  gemma4::ModelConfig config;
  convert::ConversionPlan plan;
  std::map<std::string, MgAdapter> adapters;  // by module name without prefix, e.g. "decoder.layers.3.self_attention.linear_qkv"
  std::map<std::string, GlobalTensor> tensors;  // by DCP key
};

std::string leaf_of(std::string_view rule) {
  std::string m(rule.substr(0, rule.size() - 7));  // ".weight"
  return m.substr(m.rfind('.') + 1);
}

std::vector<float> sub_box(const Shape& shape, const std::vector<float>& v, const std::vector<int64_t>& off, const Shape& size) {
  std::vector<float> out;
  std::vector<int64_t> idx(shape.size(), 0);
  std::function<void(size_t, int64_t)> walk = [&](size_t d, int64_t base) {
    if (d == shape.size()) { out.push_back(v[static_cast<size_t>(base)]); return; }
    for (int64_t i = 0; i < size[d]; ++i) walk(d + 1, base * shape[d] + off[d] + i);
  };
  walk(0, 0);
  return out;
}

// Writes `s.tensors` as a torch_dist iteration directory `dir`: one chunk per stacked index (and per expert),
// cut in `tp` parts along the split dim, as MB's TP ranks save them.
void write_checkpoint(const fs::path& dir, const Synth& s, int tp, DType dtype) {
  fs::create_directories(dir);
  std::vector<dcp::TensorToWrite> out;
  for (const auto& [key, g] : s.tensors) {
    dcp::TensorToWrite t{key, dtype, g.shape, {}};
    std::vector<int64_t> parts(g.shape.size(), 1);
    for (size_t d = 0; d < g.lead; ++d) parts[d] = g.shape[d];
    if (g.shape.size() - g.lead == 3) parts[g.lead] = g.shape[g.lead];  // per expert
    parts[g.lead + g.split_dim] = tp;
    std::vector<int64_t> at(g.shape.size(), 0);
    std::function<void(size_t)> grid = [&](size_t d) {
      if (d == g.shape.size()) {
        std::vector<int64_t> off(d);
        Shape size(d);
        for (size_t k = 0; k < d; ++k) size[k] = g.shape[k] / parts[k], off[k] = at[k] * size[k];
        auto bytes = std::make_shared<std::vector<std::byte>>();
        std::vector<float> vals = sub_box(g.shape, g.values, off, size);
        bytes->resize(vals.size() * dtype_size(dtype));
        from_f32(dtype, vals.data(), bytes->data(), vals.size());
        t.chunks.push_back({off, size, [bytes](uint64_t o, std::span<std::byte> dst) {
                              std::memcpy(dst.data(), bytes->data() + o, dst.size());
                              return Status();
                            }});
        return;
      }
      for (at[d] = 0; at[d] < parts[d]; ++at[d]) grid(d + 1);
    };
    grid(0);
    out.push_back(std::move(t));
  }
  ASSERT_OK(dcp::write_dcp(dir, out, {}, {}));
}

// Builds MB's adapter tensors for every targeted linear of `model`; B rows MB never trains are zero.
Synth synth(const std::string& model, const SynthOptions& o) {
  Synth s;
  s.config = load(model);
  auto plan = convert::build_plan(s.config, {});
  EXPECT_TRUE(plan.ok()) << plan.status().to_string();
  s.plan = std::move(*plan);
  std::mt19937 rng(o.seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const gemma4::TextConfig& text = s.config.text;
  for (const convert::MegatronParam& p : s.plan.params) {
    if (!p.rule || !mappings::is_linear(p.rule->parallel) || !o.leaves.count(leaf_of(p.rule->megatron))) continue;
    const std::string module = p.name.substr(s.plan.prefix.size(), p.name.size() - s.plan.prefix.size() - 7);
    MgAdapter ad;
    const bool experts = p.rule->experts;
    ad.experts = experts ? p.shape[0] : 0;
    ad.out = experts ? p.shape[1] : p.shape[0];
    ad.in = experts ? p.shape[2] : p.shape[1];
    ad.rank = experts && o.expert_rank ? o.expert_rank : o.rank;
    const int64_t E = experts && !o.legacy_experts ? ad.experts : 1, r = ad.rank;
    ad.a.resize(static_cast<size_t>(E * r * ad.in));
    ad.b.resize(static_cast<size_t>(E * ad.out * r));
    // Untrained B rows: the sources HF lacks (KV-shared K/V) and the V slot built from K (K=V layers).
    std::vector<bool> untrained(static_cast<size_t>(ad.out), false);
    if (!experts) {
      std::set<std::pair<int, int64_t>> seen;
      for (const convert::Piece& piece : p.pieces)
        if (s.plan.hf[piece.source].optional || !seen.insert({piece.source, piece.src_row}).second)
          for (int64_t i = 0; i < piece.rows; ++i) untrained[static_cast<size_t>(piece.dst_row + i)] = true;
    }
    // Shared and legacy layouts draw one slice, so both consume the generator alike.
    const int64_t drawn = experts && !o.per_expert ? 1 : E;
    for (int64_t e = 0; e < drawn; ++e) {
      for (int64_t k = 0; k < r; ++k)
        for (int64_t c = 0; c < ad.in; ++c)
          ad.a[static_cast<size_t>((e * r + k) * ad.in + c)] = o.value ? o.value(module, false, e, k, c) : dist(rng);
      for (int64_t row = 0; row < ad.out; ++row)
        for (int64_t k = 0; k < r; ++k)
          ad.b[static_cast<size_t>((e * ad.out + row) * r + k)] =
              untrained[static_cast<size_t>(row)] ? 0.0f : o.value ? o.value(module, true, e, row, k) : dist(rng);
    }
    if (experts && !o.per_expert && !o.legacy_experts)
      for (int64_t e = 1; e < E; ++e) {
        std::copy(ad.a.begin(), ad.a.begin() + r * ad.in, ad.a.begin() + e * r * ad.in);
        std::copy(ad.b.begin(), ad.b.begin() + ad.out * r, ad.b.begin() + e * ad.out * r);
      }
    const std::string base(p.rule->megatron.substr(0, p.rule->megatron.size() - 7));
    // MB's LinearAdapter (the PLE gate and projection, plain nn.Linear) holds A and B beside the weight.
    const std::string stem = base.ends_with("per_layer_input_gate") || base.ends_with("per_layer_projection") ? base : base + ".adapter";
    for (bool b : {false, true}) {
      convert::StorageSlot slot = convert::storage_slot(stem + (b ? ".linear_out.weight" : ".linear_in.weight"), p.layer, text,
                                                        s.plan.layer_keys, s.plan.prefix);
      Shape own = b ? Shape{ad.out, r} : Shape{r, ad.in};
      if (experts && !o.legacy_experts) own.insert(own.begin(), ad.experts);
      GlobalTensor& g = s.tensors[slot.key];
      if (g.shape.empty()) {
        g.shape = slot.axes;
        g.shape.insert(g.shape.end(), own.begin(), own.end());
        g.lead = slot.axes.size();
        g.split_dim = own.size() - 2;  // A [.., r, in]: the rank; B [.., out, r]: the rows
        int64_t n = 1;
        for (int64_t d : g.shape) n *= d;
        g.values.assign(static_cast<size_t>(n), 0.0f);
      }
      const std::vector<float>& src = b ? ad.b : ad.a;
      const size_t at = slot.index.empty() ? 0 : static_cast<size_t>(slot.index[0]) * src.size();
      std::copy(src.begin(), src.end(), g.values.begin() + static_cast<int64_t>(at));
    }
    if (experts && o.legacy_experts) ad.experts = s.config.text.num_experts.value_or(0);
    s.adapters[module] = std::move(ad);
  }
  return s;
}

// An MB root directory: iter_0000001 with the checkpoint, and run_config.yaml (peft: section) beside it.
fs::path write_root(const ScratchDir& dir, const Synth& s, const SynthOptions& o, const std::string& run_config = "") {
  const fs::path root = dir / "mb";
  write_checkpoint(root / "iter_0000001", s, o.tp, o.dtype);
  if (!run_config.empty()) write_bytes(root / "run_config.yaml", run_config);
  return root;
}

std::string export_cmd(const fs::path& root, const fs::path& out, const std::string& model, const std::string& extra = "--rank 2 --alpha 4") {
  return "lora-export --adapter " + root.string() + " --out " + out.string() + " --reference-hf " + model_dir(model).string() + " " + extra;
}

struct Exported {
  json config;
  std::map<std::string, std::pair<Shape, std::vector<float>>> tensors;
};

Exported read_export(const fs::path& out) {
  Exported e;
  e.config = json::parse(read_bytes(out / "adapter_config.json"));
  auto f = SafetensorsFile::open(out / "adapter_model.safetensors");
  EXPECT_TRUE(f.ok()) << f.status().to_string();
  for (const TensorInfo& t : f->tensors()) {
    std::vector<float> v(t.numel());
    to_f32(t.dtype, f->data(t).data(), v.data(), v.size());
    e.tensors[t.name] = {t.shape, std::move(v)};
  }
  return e;
}

// s·B·A in fp32, k summed in order: [rows, in] from B [rows, r], A [r, in].
std::vector<float> delta(const float* b, const float* a, int64_t rows, int64_t r, int64_t in, float s) {
  std::vector<float> d(static_cast<size_t>(rows * in), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < in; ++c) {
      float acc = 0;
      for (int64_t k = 0; k < r; ++k) acc += b[i * r + k] * a[k * in + c];
      d[static_cast<size_t>(i * in + c)] = s * acc;
    }
  return d;
}

// The HF targets and their Megatron rows, from the config alone: (HF module suffix, Megatron module, mg rows in HF row order).
struct Expected {
  std::string module;      // HF module path without the text prefix, e.g. "layers.3.self_attn.q_proj"
  std::string mg;          // Megatron module without prefix
  std::vector<int64_t> rows;
};

std::vector<Expected> expected_targets(const gemma4::ModelConfig& c, const std::set<std::string>& leaves) {
  std::vector<Expected> out;
  const gemma4::TextConfig& t = c.text;
  const bool moe = t.enable_moe_block;
  auto range = [](int64_t a, int64_t n) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(a + i);
    return v;
  };
  for (const gemma4::LayerSpec& l : t.layers) {
    const std::string L = "layers." + std::to_string(l.index) + ".";
    const std::string M = "decoder.layers." + std::to_string(l.index) + ".";
    if (leaves.count("linear_qkv")) {
      const int64_t nq = t.num_attention_heads, ng = l.kv_heads, hd = l.head_dim, per = nq / ng * hd, group = per + 2 * hd;
      std::vector<int64_t> q, k, v;
      for (int64_t g = 0; g < ng; ++g) {
        for (int64_t i = 0; i < per; ++i) q.push_back(g * group + i);
        for (int64_t i = 0; i < hd; ++i) k.push_back(g * group + per + i), v.push_back(g * group + per + hd + i);
      }
      out.push_back({L + "self_attn.q_proj", M + "self_attention.linear_qkv", q});
      if (!l.kv_shared) out.push_back({L + "self_attn.k_proj", M + "self_attention.linear_qkv", k});
      if (!l.kv_shared && !l.k_eq_v) out.push_back({L + "self_attn.v_proj", M + "self_attention.linear_qkv", v});
    }
    if (leaves.count("linear_proj")) out.push_back({L + "self_attn.o_proj", M + "self_attention.linear_proj", range(0, t.hidden_size)});
    const std::string mlp = moe ? M + "mlp.shared_experts." : M + "mlp.";
    const int64_t F = moe ? t.intermediate_size : l.mlp_width;
    if (leaves.count("linear_fc1")) {
      out.push_back({L + "mlp.gate_proj", mlp + "linear_fc1", range(0, F)});
      out.push_back({L + "mlp.up_proj", mlp + "linear_fc1", range(F, F)});
    }
    if (leaves.count("linear_fc2")) out.push_back({L + "mlp.down_proj", mlp + "linear_fc2", range(0, t.hidden_size)});
  }
  return out;
}

// Checks the exported file against `s`: the exact key set, shapes, and s·B_hf·A_hf == s·B_mg·A_mg rows, bit-exact.
void check_export(const Synth& s, const Exported& e, const std::set<std::string>& leaves, int64_t r, float alpha) {
  const std::string pre = "base_model.model." + s.config.text_prefix();
  std::set<std::string> want;
  const float scale = alpha / static_cast<float>(r);
  for (const Expected& x : expected_targets(s.config, leaves)) {
    const std::string a_key = pre + x.module + ".lora_A.weight", b_key = pre + x.module + ".lora_B.weight";
    want.insert(a_key);
    want.insert(b_key);
    ASSERT_TRUE(e.tensors.count(a_key) && e.tensors.count(b_key)) << "missing " << a_key;
    const MgAdapter& mg = s.adapters.at(x.mg);
    const auto& [as, av] = e.tensors.at(a_key);
    const auto& [bs, bv] = e.tensors.at(b_key);
    ASSERT_EQ(as, (Shape{r, mg.in})) << a_key;
    ASSERT_EQ(bs, (Shape{static_cast<int64_t>(x.rows.size()), r})) << b_key;
    std::vector<float> mg_rows;
    for (int64_t row : x.rows) mg_rows.insert(mg_rows.end(), mg.b.begin() + row * r, mg.b.begin() + (row + 1) * r);
    const int64_t n = static_cast<int64_t>(x.rows.size());
    EXPECT_EQ(delta(bv.data(), av.data(), n, r, mg.in, scale), delta(mg_rows.data(), mg.a.data(), n, r, mg.in, scale)) << x.module;
  }
  // Routed experts: lora_A row e·r+k = A_e[k, :], lora_B column k·E+e = B_e[:, k]; gate_up_proj is the inner wrapper.
  if (s.config.text.enable_moe_block) {
    const int64_t E = s.config.text.num_experts.value_or(0);
    for (const gemma4::LayerSpec& l : s.config.text.layers) {
      const std::string L = pre + "layers." + std::to_string(l.index) + ".experts.";
      const bool both = leaves.count("linear_fc1") && leaves.count("linear_fc2");
      for (auto [leaf, key] : {std::pair{"linear_fc1", both ? L + "base_layer." : L}, std::pair{"linear_fc2", L}}) {
        if (!leaves.count(leaf)) continue;
        const MgAdapter& mg = s.adapters.at("decoder.layers." + std::to_string(l.index) + ".mlp.experts.experts." + leaf);
        const int64_t er = mg.rank;
        want.insert(key + "lora_A.weight");
        want.insert(key + "lora_B.weight");
        ASSERT_TRUE(e.tensors.count(key + "lora_A.weight")) << key;
        const auto& [as, av] = e.tensors.at(key + "lora_A.weight");
        const auto& [bs, bv] = e.tensors.at(key + "lora_B.weight");
        ASSERT_EQ(as, (Shape{E * er, mg.in}));
        ASSERT_EQ(bs, (Shape{mg.out, E * er}));
        const bool legacy = mg.a.size() == static_cast<size_t>(er * mg.in);
        for (int64_t ex = 0; ex < E; ++ex) {
          std::vector<float> a_hf(av.begin() + ex * er * mg.in, av.begin() + (ex + 1) * er * mg.in), b_hf;
          for (int64_t o = 0; o < mg.out; ++o)
            for (int64_t k = 0; k < er; ++k) b_hf.push_back(bv[static_cast<size_t>(o * E * er + k * E + ex)]);
          const int64_t me = legacy ? 0 : ex;
          const float es = alpha / static_cast<float>(er);
          EXPECT_EQ(delta(b_hf.data(), a_hf.data(), mg.out, er, mg.in, es),
                    delta(mg.b.data() + me * mg.out * er, mg.a.data() + me * er * mg.in, mg.out, er, mg.in, es))
              << key << " expert " << ex;
        }
      }
    }
  }
  std::set<std::string> got;
  for (const auto& [k, v] : e.tensors) got.insert(k);
  EXPECT_EQ(got, want);
}

void roundtrip_model(const std::string& model, const std::string& extra_flags = "") {
  ScratchDir dir;
  SynthOptions o;
  Synth s = synth(model, o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", model, "--rank 2 --alpha 4 --quiet " + extra_flags), &output), 0) << output;
  Exported e = read_export(dir / "peft");
  check_export(s, e, o.leaves, 2, 4.0f);
  EXPECT_EQ(e.config["r"], 2);
  EXPECT_EQ(e.config["lora_alpha"], 4.0);
  EXPECT_EQ(e.config["peft_type"], "LORA");
  EXPECT_EQ(e.config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(e.config["base_model_name_or_path"], model_dir(model).string());
  EXPECT_EQ(e.config["rank_pattern"], json::object());
  EXPECT_EQ(e.config["lora_dropout"], 0.0);
  EXPECT_EQ(e.config["use_dora"], false);
  EXPECT_TRUE(e.config["target_modules"].is_string());
  for (const auto& [k, v] : e.tensors) EXPECT_EQ(v.first.size(), 2u) << k;
}

TEST(LoraExport, E2bKeySetOmitsKvSharedKvAndDeltasMatchMegatronRowsBitExact) { roundtrip_model("tiny-e2b"); }
TEST(LoraExport, E4bConditionalPrefixKeySetAndDeltasMatchMegatronRowsBitExact) { roundtrip_model("tiny-e4b"); }
TEST(LoraExport, Dense31bOmitsVProjOnKEqVGlobalLayersAndDeltasMatchBitExact) { roundtrip_model("tiny-31b"); }
TEST(LoraExport, Moe26bExpertPackingAndSharedExpertDeltasMatchBitExactWithAllowInexact) {
  roundtrip_model("tiny-26b-a4b", "--allow-inexact");
}
TEST(LoraExport, VlCheckpointExportsLanguageModelOnlyWithConditionalPrefix) { roundtrip_model("tiny-e4b-vla"); }

// The regex of target_modules matches exactly the exported 2-D modules among every module name of the model
// (towers included: their q_proj/k_proj are Gemma4ClippableLinear, which PEFT cannot wrap).
TEST(LoraExport, TargetModulesRegexMatchesExactlyTheExportedModulesNoTowerNoAbsentKv) {
  for (const std::string model : {"tiny-e4b-vla", "tiny-31b", "tiny-e2b"}) {
    ScratchDir dir;
    SynthOptions o;
    Synth s = synth(model, o);
    const fs::path root = write_root(dir, s, o);
    std::string output;
    ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", model, "--rank 2 --quiet"), &output), 0) << output;
    Exported e = read_export(dir / "peft");
    // re.fullmatch as PEFT applies it (through lora::PyFullMatch: GCC 12's <regex> trips -Werror in the sanitized build).
    auto re = lora::PyFullMatch::compile(e.config["target_modules"].get<std::string>(), "target_modules");
    ASSERT_TRUE(re.ok()) << re.status().to_string();
    std::set<std::string> exported;
    for (const auto& [k, v] : e.tensors) exported.insert(k.substr(17, k.size() - 17 - 14));  // "base_model.model." ... ".lora_A.weight"
    // Every HF module name a model of this config has: text tensors and the towers' (from the checkpoint).
    std::set<std::string> modules;
    auto add = [&](const std::string& name) {
      if (name.ends_with(".weight")) modules.insert(name.substr(0, name.size() - 7));
      if (name.ends_with(".linear.weight")) modules.insert(name.substr(0, name.size() - 14));  // the ClippableLinear itself
    };
    for (const gemma4::HfTensor& t : gemma4::hf_text_tensors(s.config))
      if (!t.optional) add(t.name);
    auto f = SafetensorsFile::open(model_dir(model) / "model.safetensors");
    ASSERT_TRUE(f.ok());
    for (const TensorInfo& t : f->tensors()) add(t.name);
    size_t towers = 0;
    for (const std::string& m : modules) {
      towers += m.find("_tower.") != std::string::npos;
      EXPECT_EQ(re->matches(m), exported.count(m) > 0) << model << ": " << m;
    }
    if (model == "tiny-e4b-vla") {
      EXPECT_GT(towers, 0u);
    }
  }
}

// Hand-worked: tiny-31b layer 0 (sliding, 2 query groups of 2 heads, head_dim 32): the fused B has per group
// [q 64 rows; k 32; v 32]. B_mg[row, k] = 10·row + k, so each exported row names its Megatron row.
TEST(LoraExport, HandWorkedQkvRowsPerQueryGroupAreDeinterleavedInHfOrder) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_qkv"};
  o.value = [](const std::string&, bool b, int64_t, int64_t row, int64_t col) { return b ? 10.0f * row + col : 1.0f; };
  Synth s = synth("tiny-31b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2 --quiet"), &output), 0) << output;
  Exported e = read_export(dir / "peft");
  const std::string pre = "base_model.model.model.language_model.layers.0.self_attn.";
  auto b_row = [&](const std::string& proj, int64_t hf_row) { return e.tensors.at(pre + proj + ".lora_B.weight").second[hf_row * 2 + 1]; };
  // q: HF rows 0..63 = Megatron 0..63 (group 0), HF 64..127 = Megatron 128..191 (group 1).
  EXPECT_EQ(b_row("q_proj", 0), 1.0f);
  EXPECT_EQ(b_row("q_proj", 63), 631.0f);
  EXPECT_EQ(b_row("q_proj", 64), 1281.0f);
  EXPECT_EQ(b_row("q_proj", 127), 1911.0f);
  // k: HF 0..31 = Megatron 64..95, HF 32..63 = 192..223; v: HF 0..31 = 96..127, HF 32..63 = 224..255.
  EXPECT_EQ(b_row("k_proj", 0), 641.0f);
  EXPECT_EQ(b_row("k_proj", 32), 1921.0f);
  EXPECT_EQ(b_row("v_proj", 0), 961.0f);
  EXPECT_EQ(b_row("v_proj", 63), 2551.0f);
  // Layer 2 is global with attention_k_eq_v: q and k only, the V slot dropped.
  const std::string g = "base_model.model.model.language_model.layers.2.self_attn.";
  EXPECT_TRUE(e.tensors.count(g + "k_proj.lora_B.weight"));
  EXPECT_FALSE(e.tensors.count(g + "v_proj.lora_B.weight"));
  EXPECT_FALSE(e.tensors.count(g + "v_proj.lora_A.weight"));
}

// Hand-worked: tiny-26b-a4b experts (E = 6, r = 2). A_e[k, c] = 100·e + 10·k, B_e[row, k] = 1000·e + 10·row + k.
TEST(LoraExport, HandWorkedExpertPackingRowERPlusKAndColumnKEPlusE) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc1", "linear_fc2"};
  o.value = [](const std::string&, bool b, int64_t e, int64_t row, int64_t col) {
    return b ? 1000.0f * e + 10.0f * row + col : 100.0f * e + 10.0f * row;
  };
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-26b-a4b", "--rank 2 --quiet"), &output), 0) << output;
  Exported e = read_export(dir / "peft");
  const std::string L = "base_model.model.model.language_model.layers.1.experts.";
  const auto& gate_a = e.tensors.at(L + "base_layer.lora_A.weight");  // gate_up_proj: [E·r, H] = [12, 64]
  const auto& gate_b = e.tensors.at(L + "base_layer.lora_B.weight");  // [2I, E·r] = [32, 12]
  const auto& down_b = e.tensors.at(L + "lora_B.weight");             // down_proj: [H, E·r] = [64, 12]
  ASSERT_EQ(gate_a.first, (Shape{12, 64}));
  ASSERT_EQ(gate_b.first, (Shape{32, 12}));
  ASSERT_EQ(down_b.first, (Shape{64, 12}));
  // lora_A row e·r + k: row 9 = expert 4, rank 1.
  EXPECT_EQ(gate_a.second[9 * 64 + 5], 410.0f);
  EXPECT_EQ(gate_a.second[2 * 64], 100.0f);  // row 2 = expert 1, rank 0
  // lora_B column k·E + e: column 10 = rank 1, expert 4; column 4 = rank 0, expert 4; column 1 = rank 0, expert 1.
  EXPECT_EQ(gate_b.second[3 * 12 + 10], 4031.0f);
  EXPECT_EQ(gate_b.second[3 * 12 + 4], 4030.0f);
  EXPECT_EQ(gate_b.second[3 * 12 + 1], 1030.0f);
  EXPECT_EQ(down_b.second[7 * 12 + 11], 5071.0f);  // rank 1, expert 5, row 7
  EXPECT_EQ(e.config["target_parameters"].size(), 12u);
  EXPECT_EQ(e.config["target_modules"], "^model\\.language_model\\.layers\\.\\d+\\.(mlp\\.gate_proj|mlp\\.up_proj|mlp\\.down_proj)$");
}

// Only one expert parameter targeted: PEFT wraps it once, so its keys have no base_layer level.
TEST(LoraExport, SingleTargetedExpertParameterHasNoBaseLayerLevel) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc1"};
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-26b-a4b", "--rank 2 --quiet"), &output), 0) << output;
  Exported e = read_export(dir / "peft");
  check_export(s, e, o.leaves, 2, 2.0f);
  EXPECT_TRUE(e.tensors.count("base_model.model.model.language_model.layers.0.experts.lora_A.weight"));
}

// TP-agnostic: the same adapter saved as TP2 chunks (A split on the rank axis, B on rows) exports byte-identical files.
TEST(LoraExport, Tp2ChunkingExportsByteIdenticalFiles) {
  for (const std::string model : {"tiny-26b-a4b", "tiny-e2b"}) {
    ScratchDir d1, d2;
    SynthOptions o;
    o.rank = 4;
    Synth s = synth(model, o);
    const fs::path r1 = write_root(d1, s, o);
    o.tp = 2;
    const fs::path r2 = write_root(d2, s, o);
    std::string output;
    const std::string flags = "--rank 4 --quiet --allow-inexact";
    ASSERT_EQ(run_g4convert(export_cmd(r1, d1 / "peft", model, flags), &output), 0) << output;
    ASSERT_EQ(run_g4convert(export_cmd(r2, d2 / "peft", model, flags), &output), 0) << output;
    EXPECT_EQ(read_bytes(d1 / "peft" / "adapter_model.safetensors"), read_bytes(d2 / "peft" / "adapter_model.safetensors")) << model;
    EXPECT_EQ(read_bytes(d1 / "peft" / "adapter_config.json"), read_bytes(d2 / "peft" / "adapter_config.json")) << model;
  }
}

// MB's shared mode (E identical slices) and the legacy layout (no E axis) export the same PEFT tensors.
TEST(LoraExport, LegacySharedExpertLayoutWithoutEAxisEqualsSharedModeExport) {
  ScratchDir d1, d2;
  SynthOptions o;
  o.leaves = {"linear_fc1", "linear_fc2"};
  o.per_expert = false;
  Synth shared = synth("tiny-26b-a4b", o);
  o.legacy_experts = true;
  Synth legacy = synth("tiny-26b-a4b", o);
  const std::string yaml = "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 2\n  alpha: 2\n  share_expert_adapters: true\n";
  o.legacy_experts = false;
  const fs::path r1 = write_root(d1, shared, o, yaml);
  o.legacy_experts = true;
  const fs::path r2 = write_root(d2, legacy, o, yaml);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(r1, d1 / "peft", "tiny-26b-a4b", "--quiet"), &output), 0) << output;
  ASSERT_EQ(run_g4convert(export_cmd(r2, d2 / "peft", "tiny-26b-a4b", "--quiet"), &output), 0) << output;
  EXPECT_EQ(read_bytes(d1 / "peft" / "adapter_model.safetensors"), read_bytes(d2 / "peft" / "adapter_model.safetensors"));
  check_export(legacy, read_export(d2 / "peft"), o.leaves, 2, 2.0f);
}

// normalize_moe_lora: expert adapters have rank dim / top_k (here 4 / 2 = 2), which rank_pattern states per parameter.
TEST(LoraExport, NormalizedMoeExpertRankGoesToRankPatternByParameterPath) {
  ScratchDir dir;
  SynthOptions o;
  o.rank = 4;
  o.expert_rank = 2;
  o.leaves = {"linear_fc1", "linear_fc2"};
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root = write_root(dir, s, o,
                                   "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 4\n  alpha: 8\n  normalize_moe_lora: true\n"
                                   "  share_expert_adapters: false\n");
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-26b-a4b", "--quiet"), &output), 0) << output;
  Exported e = read_export(dir / "peft");
  check_export(s, e, o.leaves, 4, 8.0f);
  EXPECT_EQ(e.config["rank_pattern"]["model.language_model.layers.3.experts.gate_up_proj"], 2);
  EXPECT_EQ(e.config["rank_pattern"]["model.language_model.layers.3.experts.down_proj"], 2);
  EXPECT_EQ(e.config["rank_pattern"].size(), 12u);
  // Without normalize_moe_lora the rank 2 contradicts dim 4.
  write_bytes(root / "run_config.yaml", "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 4\n  alpha: 8\n");
  EXPECT_EQ(run_g4convert(export_cmd(root, dir / "peft2", "tiny-26b-a4b", "--quiet"), &output), 2);
  EXPECT_NE(output.find("rank 2"), std::string::npos) << output;
}

// Router and per-layer-embedding adapters (E2B's PLE gate/projection, the model projection; 26B's router).
TEST(LoraExport, PleAdaptersExportExactlyAndRouterOnlyWithAllowInexact) {
  for (auto [model, leaves, modules] :
       {std::tuple{std::string("tiny-e2b"), std::set<std::string>{"per_layer_input_gate", "per_layer_projection", "per_layer_model_proj"},
                   std::vector<std::string>{"model.layers.4.per_layer_input_gate", "model.layers.4.per_layer_projection",
                                            "model.per_layer_model_projection"}},
        std::tuple{std::string("tiny-26b-a4b"), std::set<std::string>{"router"},
                   std::vector<std::string>{"model.language_model.layers.5.router.proj"}}}) {
    ScratchDir dir;
    SynthOptions o;
    o.leaves = leaves;
    Synth s = synth(model, o);
    const fs::path root = write_root(dir, s, o);
    std::string output;
    // The router adapter sees the raw residual in MB, the normalised one in HF: only with --allow-inexact.
    const bool router = model == "tiny-26b-a4b";
    if (router) {
      EXPECT_EQ(run_g4convert(export_cmd(root, dir / "peft", model, "--rank 2"), &output), 2) << output;
      EXPECT_NE(output.find("LoRATopKRouter"), std::string::npos) << output;
    }
    ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", model, router ? "--rank 2 --allow-inexact" : "--rank 2"), &output), 0) << output;
    EXPECT_EQ(output.find("warning") != std::string::npos, router) << output;
    Exported e = read_export(dir / "peft");
    auto re = lora::PyFullMatch::compile(e.config["target_modules"].get<std::string>(), "target_modules");
    ASSERT_TRUE(re.ok()) << re.status().to_string();
    for (const std::string& m : modules) {
      EXPECT_TRUE(e.tensors.count("base_model.model." + m + ".lora_B.weight")) << m;
      EXPECT_TRUE(re->matches(m)) << m;
    }
  }
}

TEST(LoraExport, DtypeKeepWritesStoredBf16AndDefaultWidensToFp32Exactly) {
  ScratchDir dir;
  SynthOptions o;
  o.dtype = DType::kBF16;
  Synth s = synth("tiny-31b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "keep", "tiny-31b", "--rank 2 --quiet --dtype keep"), &output), 0) << output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "f32", "tiny-31b", "--rank 2 --quiet"), &output), 0) << output;
  auto keep = SafetensorsFile::open(dir / "keep" / "adapter_model.safetensors");
  auto f32 = SafetensorsFile::open(dir / "f32" / "adapter_model.safetensors");
  ASSERT_TRUE(keep.ok() && f32.ok());
  for (const TensorInfo& t : keep->tensors()) {
    EXPECT_EQ(t.dtype, DType::kBF16);
    const TensorInfo* w = f32->find(t.name);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->dtype, DType::kF32);
    std::vector<float> a(t.numel()), b(t.numel());
    to_f32(t.dtype, keep->data(t).data(), a.data(), a.size());
    to_f32(w->dtype, f32->data(*w).data(), b.data(), b.size());
    EXPECT_EQ(a, b) << t.name;
  }
}

TEST(LoraExport, JsonSummaryCountsTargetsTensorsAndBytes) {
  ScratchDir dir;
  SynthOptions o;
  Synth s = synth("tiny-31b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2 --json"), &output), 0) << output;
  json j = json::parse(output.substr(output.find('{')));
  // 6 layers × (q, k, o, gate, up, down) + v on the 4 sliding layers.
  EXPECT_EQ(j["targets"], 40);
  EXPECT_EQ(j["tensors"], 80);
  EXPECT_EQ(j["adapters"], 24);
  // Data bytes: the file less its header.
  const std::string file = read_bytes(dir / "peft" / "adapter_model.safetensors");
  uint64_t header = 0;
  std::memcpy(&header, file.data(), 8);
  EXPECT_EQ(j["bytes"].get<uint64_t>(), file.size() - 8 - header);
  EXPECT_TRUE(j["warnings"].empty());
  // An existing output needs --force.
  EXPECT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2 --quiet"), &output), 2);
  EXPECT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2 --quiet --force"), &output), 0) << output;
}

// Non-zero B rows MB never trains (a K=V layer's V slot): exported without them, with a warning naming the norm.
TEST(LoraExport, NonZeroUntrainedVSlotRowsWarnWithNorm) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_qkv"};
  Synth s = synth("tiny-31b", o);
  // Global layer 2 is the first layer of the global stack; its V slot of group 0 is rows 96..127.
  GlobalTensor& b = s.tensors.at("language_model.decoder.layers.self_attention_global.linear_qkv.adapter.linear_out.weight");
  ASSERT_EQ(b.shape.size(), 3u);
  const int64_t r = 2;
  // Global head_dim: rows per group = (nq/ng + 2)·hd; the V slot is the last hd rows of group 0.
  const gemma4::LayerSpec& l2 = s.config.text.layers[2];
  const int64_t hd = l2.head_dim, v0 = (s.config.text.num_attention_heads / l2.kv_heads + 1) * hd;
  b.values[static_cast<size_t>(v0 * r)] = 3.0f;
  b.values[static_cast<size_t>(v0 * r + 1)] = 4.0f;
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2"), &output), 0) << output;
  EXPECT_NE(output.find("warning"), std::string::npos) << output;
  EXPECT_NE(output.find("norm 5.0"), std::string::npos) << output;
  EXPECT_NE(output.find("attention_k_eq_v"), std::string::npos) << output;
}

// Refusals: exit 2 with one line.
void expect_refused(const fs::path& root, const fs::path& out, const std::string& model, const std::string& flags, const std::string& says) {
  std::string output;
  EXPECT_EQ(run_g4convert(export_cmd(root, out, model, flags), &output), 2) << output;
  EXPECT_NE(output.find(says), std::string::npos) << output;
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  EXPECT_FALSE(fs::exists(out));
}

TEST(LoraExport, RefusesMoeLinearProjAdapterAfterPostNormWithoutAllowInexact) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_proj"};
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root = write_root(dir, s, o);
  expect_refused(root, dir / "peft", "tiny-26b-a4b", "--rank 2", "TERowParallelLinearLayerNorm");
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-26b-a4b", "--rank 2 --allow-inexact"), &output), 0) << output;
  EXPECT_NE(output.find("warning"), std::string::npos) << output;
}

TEST(LoraExport, DenseLinearProjAdapterIsExactAndNeedsNoFlag) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_proj"};
  Synth s = synth("tiny-31b", o);
  const fs::path root = write_root(dir, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(root, dir / "peft", "tiny-31b", "--rank 2"), &output), 0) << output;
  EXPECT_EQ(output.find("warning"), std::string::npos) << output;
}

TEST(LoraExport, RefusesSharedOuterExpertLayout) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc1"};
  Synth s = synth("tiny-26b-a4b", o);
  // SGLang's shared-outer: fc1 A without the E axis, fc1 B with it.
  GlobalTensor& a = s.tensors.at("language_model.decoder.layers.mlp.experts.experts.linear_fc1.adapter.linear_in.weight");
  a.shape.erase(a.shape.begin() + 1);
  a.values.resize(static_cast<size_t>(a.shape[0] * a.shape[1] * a.shape[2]));
  const fs::path root = write_root(dir, s, o);
  expect_refused(root, dir / "peft", "tiny-26b-a4b", "--rank 2", "shared-outer");
}

TEST(LoraExport, RefusesDropoutWithExpertTargets) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc1"};
  o.per_expert = false;
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root =
      write_root(dir, s, o, "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 2\n  alpha: 2\n  dropout: 0.1\n");
  expect_refused(root, dir / "peft", "tiny-26b-a4b", "", "dropout");
}

TEST(LoraExport, RefusesUnexplainedAdapterKeyNamingIt) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc2"};
  Synth s = synth("tiny-31b", o);
  GlobalTensor g = s.tensors.begin()->second;
  s.tensors["language_model.decoder.layers.mlp.linear_fc3.adapter.linear_in.weight"] = g;
  const fs::path root = write_root(dir, s, o);
  expect_refused(root, dir / "peft", "tiny-31b", "--rank 2", "linear_fc3.adapter.linear_in.weight");
}

TEST(LoraExport, RefusesDoraMagnitudeAndCanonicalLoraKeysNamingThem) {
  for (auto [key, says] : {std::pair{std::string("language_model.decoder.layers.mlp.linear_fc2.adapter.weight_magnitude"), "DoRA"},
                           std::pair{std::string("language_model.decoder.layers.self_attention_sliding.linear_qkv.adapter.adapter_q.linear_in.weight"),
                                     "canonical"}}) {
    ScratchDir dir;
    SynthOptions o;
    o.leaves = {"linear_fc2"};
    Synth s = synth("tiny-31b", o);
    s.tensors[key] = s.tensors.begin()->second;
    const fs::path root = write_root(dir, s, o);
    expect_refused(root, dir / "peft", "tiny-31b", "--rank 2", key);
    expect_refused(root, dir / "peft", "tiny-31b", "--rank 2", says);
  }
}

TEST(LoraExport, RefusesAdapterShapeDisagreeingWithConfigAndRankMismatch) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc2"};
  Synth s = synth("tiny-31b", o);
  const fs::path root = write_root(dir, s, o);
  // The checkpoint holds rank 2: --rank 3 disagrees.
  expect_refused(root, dir / "peft", "tiny-31b", "--rank 3", "rank 2");
  // A config with another hidden size: B's rows disagree.
  expect_refused(root, dir / "peft", "tiny-31b", "--rank 2 --config " + (model_dir("tiny-e4b") / "config.json").string(), "decoder.layers");
}

TEST(LoraExport, RefusesPerExpertSlicesWhenSettingsSayShared) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_fc2"};
  o.per_expert = true;
  Synth s = synth("tiny-26b-a4b", o);
  const fs::path root = write_root(dir, s, o, "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 2\n  alpha: 2\n");
  expect_refused(root, dir / "peft", "tiny-26b-a4b", "", "share_expert_adapters");
}

// The derivation itself, without files: B's runs per query group for q/k/v as a hand-worked table.
TEST(LoraLayout, QkvTargetsTakeTheBaseWeightsPerGroupRowRuns) {
  ScratchDir dir;
  SynthOptions o;
  o.leaves = {"linear_qkv"};
  Synth s = synth("tiny-e4b", o);
  const fs::path root = write_root(dir, s, o);
  auto ckpt = dcp::Checkpoint::open(root);
  ASSERT_OK(ckpt);
  lora::LoraSettings settings;
  settings.dim = 2;
  auto layout = lora::derive_adapter_layout(**ckpt, s.plan, s.config, settings);
  ASSERT_OK(layout);
  // Layer 0: sliding, 2 groups, head_dim 32. Runs (mg_row, hf_row, rows).
  auto runs = [&](const std::string& module) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> v;
    for (const lora::PeftTarget& t : layout->targets)
      if (t.module == module)
        for (const lora::RowRun& r : t.b_rows) v.push_back({r.mg_row, r.hf_row, r.rows});
    return v;
  };
  using V = std::vector<std::tuple<int64_t, int64_t, int64_t>>;
  EXPECT_EQ(runs("model.language_model.layers.0.self_attn.q_proj"), (V{{0, 0, 64}, {128, 64, 64}}));
  EXPECT_EQ(runs("model.language_model.layers.0.self_attn.k_proj"), (V{{64, 0, 32}, {192, 32, 32}}));
  EXPECT_EQ(runs("model.language_model.layers.0.self_attn.v_proj"), (V{{96, 0, 32}, {224, 32, 32}}));
  // Layers 4 and 5 share K/V: q only, and their K/V rows are listed as untrained.
  EXPECT_TRUE(runs("model.language_model.layers.4.self_attn.k_proj").empty());
  EXPECT_FALSE(runs("model.language_model.layers.4.self_attn.q_proj").empty());
  size_t kv_shared = 0;
  for (const lora::UntrainedRows& u : layout->untrained) kv_shared += u.why.find("KV-shared") != std::string::npos;
  EXPECT_EQ(kv_shared, 4u);  // k and v of layers 4 and 5
}

}  // namespace
}  // namespace g4::testing

namespace g4::testing {
namespace {

// A full checkpoint (base weights beside the adapters), named by its iteration directory, exports the same adapter.
TEST(LoraExport, FullCheckpointWithBaseWeightsByIterationDirExportsTheSameFiles) {
  ScratchDir d1, d2;
  SynthOptions o;
  Synth s = synth("tiny-31b", o);
  const fs::path r1 = write_root(d1, s, o);
  // Base weights next to the adapters (values irrelevant: they are never read).
  s.tensors["language_model.decoder.layers.mlp.linear_fc2.weight"] = {{6, 64, 96}, std::vector<float>(6 * 64 * 96, 0.5f), 1, 0};
  s.tensors["language_model.embedding.word_embeddings.weight"] = {{8, 64}, std::vector<float>(8 * 64, 0.25f), 0, 0};
  const fs::path r2 = write_root(d2, s, o);
  std::string output;
  ASSERT_EQ(run_g4convert(export_cmd(r1, d1 / "peft", "tiny-31b", "--rank 2 --quiet"), &output), 0) << output;
  ASSERT_EQ(run_g4convert(export_cmd(r2 / "iter_0000001", d2 / "peft", "tiny-31b", "--rank 2 --quiet"), &output), 0) << output;
  EXPECT_EQ(read_bytes(d1 / "peft" / "adapter_model.safetensors"), read_bytes(d2 / "peft" / "adapter_model.safetensors"));
}

}  // namespace
}  // namespace g4::testing
