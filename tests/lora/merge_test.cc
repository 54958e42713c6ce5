// lora-merge: the arithmetic (fp32 exact against an independent loop over PEFT's packed layout, bf16 rounded once
// to nearest even), byte-identical untouched tensors and shard layout, refusals naming both files, and merges into
// the bundled tiny checkpoints (HF and Megatron bases, both HF prefixes).
#include "lora/lora_merge.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "convert/hf2mcore.h"
#include "lora/lora_delta.h"
#include "lora/peft_fixture.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::lora {
namespace {
namespace fs = std::filesystem;

using testing::FloatTensor;
using testing::ScratchDir;
using testing::test_values;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

FloatTensor t(const std::string& name, Shape shape, uint64_t seed, DType dtype = DType::kF32) {
  const size_t n = static_cast<size_t>(*checked_numel(shape));
  return {name, std::move(shape), test_values(seed, n), dtype};
}

std::vector<float> read_f32(const SafetensorsSet& set, const std::string& name) {
  const SafetensorsSet::Entry* e = set.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  std::vector<float> v(e->info->numel());
  to_f32(e->info->dtype, set.data(*e).data(), v.data(), v.size());
  return v;
}

std::string bytes_of(const SafetensorsSet& set, const std::string& name) {
  const SafetensorsSet::Entry* e = set.find(name);
  if (!e) return "<missing " + name + ">";
  std::span<const std::byte> b = set.data(*e);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The merge written out independently of lora_delta.cc: straight from PEFT's packed factors (lora_A row e·r+k,
// lora_B column k·E+e), sum over k ascending in fp32, fp32 add, one rounding to `dtype`. E = 0: a 2-D weight.
std::vector<float> expected_merge(const std::vector<float>& w, const std::vector<float>& packed_a, const std::vector<float>& packed_b,
                                  int64_t experts, int64_t r, int64_t out, int64_t in, double scale, DType dtype) {
  const int64_t e_count = std::max<int64_t>(experts, 1);
  std::vector<float> merged(w.size());
  for (int64_t e = 0; e < e_count; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < in; ++j) {
        float acc = 0;
        for (int64_t k = 0; k < r; ++k) {
          const float b = packed_b[o * r * e_count + k * e_count + e];
          const float a = packed_a[(e * r + k) * in + j];
          const float p = b * a;
          acc = acc + p;
        }
        const size_t at = static_cast<size_t>((e * out + o) * in + j);
        float sum = w[at] + static_cast<float>(scale) * acc;
        std::byte buf[4];
        from_f32(dtype, &sum, buf, 1);
        to_f32(dtype, buf, &merged[at], 1);
      }
  return merged;
}

// A small HF-like base: config.json, a tokenizer side file, and `tensors` in one or two shards.
void write_base(const fs::path& dir, const std::vector<FloatTensor>& tensors, bool sharded) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\"model_type\": \"gemma4\", \"note\": \"copied unchanged\"}\n";
  std::ofstream(dir / "tokenizer_config.json") << "{\"x\": 1}\n";
  if (!sharded) {
    testing::write_float_tensors(dir / "model.safetensors", tensors);
    return;
  }
  const size_t half = tensors.size() / 2;
  const std::vector<FloatTensor> first(tensors.begin(), tensors.begin() + half), second(tensors.begin() + half, tensors.end());
  testing::write_float_tensors(dir / "model-00001-of-00002.safetensors", first);
  testing::write_float_tensors(dir / "model-00002-of-00002.safetensors", second);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    index["weight_map"][tensors[i].name] = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    total += tensors[i].values.size() * dtype_size(tensors[i].dtype);
  }
  index["metadata"]["total_size"] = total;
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
}

struct SmallCase {
  int64_t e = 3, r = 2, out = 5, in = 7;
  std::vector<FloatTensor> base, adapter;
  nlohmann::json config;
};

// m.proj.weight [out, in] (lora.Linear) and m.experts.gate_up_proj [E, out, in] (ParamWrapper), plus untouched
// tensors of several dtypes. E = 3 and r = 2 differ, so a swapped expert/rank order merges other numbers.
SmallCase small_case(DType dtype) {
  SmallCase c;
  c.base = {t("m.experts.gate_up_proj", {c.e, c.out, c.in}, 11, dtype), t("m.norm.weight", {c.in}, 12, DType::kBF16),
            t("m.proj.weight", {c.out, c.in}, 13, dtype), t("m.other.weight", {3, 4}, 14, DType::kF16)};
  c.adapter = {t("base_model.model.m.proj.lora_A.weight", {c.r, c.in}, 21), t("base_model.model.m.proj.lora_B.weight", {c.out, c.r}, 22),
               t("base_model.model.m.experts.lora_A.weight", {c.e * c.r, c.in}, 23),
               t("base_model.model.m.experts.lora_B.weight", {c.out, c.e * c.r}, 24)};
  c.config = testing::peft_config(c.r, 3);
  c.config["target_modules"] = {"proj"};
  c.config["target_parameters"] = {"m.experts.gate_up_proj"};
  return c;
}

Result<LoraMergeSummary> merge(const fs::path& adapter, const fs::path& base, const fs::path& out) {
  LoraMergeOptions o;
  o.adapter = adapter;
  o.base = base;
  o.out = out;
  o.threads = 2;
  return lora_merge(o);
}

TEST(LoraMerge, Fp32EqualsIndependentLoopBitExactlyForLinearAndExperts) {
  ScratchDir dir;
  SmallCase c = small_case(DType::kF32);
  write_base(dir / "base", c.base, false);
  testing::write_peft_adapter(dir / "adapter", c.config, c.adapter);
  auto summary = merge(dir / "adapter", dir / "base", dir / "out");
  ASSERT_OK(summary);
  EXPECT_EQ(summary->merged, 2u);
  EXPECT_EQ(summary->tensors, 4u);
  auto out = SafetensorsSet::open_dir(dir / "out");
  ASSERT_OK(out);
  const double s = 3.0 / 2;
  const std::vector<float> proj = expected_merge(c.base[2].values, c.adapter[0].values, c.adapter[1].values, 0, c.r, c.out, c.in, s, DType::kF32);
  const std::vector<float> experts = expected_merge(c.base[0].values, c.adapter[2].values, c.adapter[3].values, c.e, c.r, c.out, c.in, s, DType::kF32);
  EXPECT_EQ(read_f32(*out, "m.proj.weight"), proj);
  EXPECT_EQ(read_f32(*out, "m.experts.gate_up_proj"), experts);
  EXPECT_NE(read_f32(*out, "m.proj.weight"), c.base[2].values);  // the delta is not zero
  // Expert-major columns (e·r+k) instead of PEFT's k·E+e merge other numbers: the test can tell them apart.
  std::vector<float> swapped_b(c.adapter[3].values.size());
  for (int64_t o = 0; o < c.out; ++o)
    for (int64_t e = 0; e < c.e; ++e)
      for (int64_t k = 0; k < c.r; ++k) swapped_b[o * c.e * c.r + k * c.e + e] = c.adapter[3].values[o * c.e * c.r + e * c.r + k];
  EXPECT_NE(expected_merge(c.base[0].values, c.adapter[2].values, swapped_b, c.e, c.r, c.out, c.in, s, DType::kF32), experts);
}

TEST(LoraMerge, ElementRangesStartingMidRowMergeAsTheWholeTensor) {
  // The writer hands out byte chunks that may start and end inside a row: any split gives the same bytes.
  const int64_t e = 2, r = 3, out = 9, in = 37;
  const std::vector<float> a = test_values(1, e * r * in), b = test_values(2, e * out * r), w = test_values(3, e * out * in);
  const DeltaFactors f{a.data(), b.data(), e, r, in, out, 0.75f};
  std::vector<std::byte> src(w.size() * 2), whole(src.size()), pieces(src.size());
  from_f32(DType::kBF16, w.data(), src.data(), w.size());
  EXPECT_EQ(merge_elements(DType::kBF16, src, whole, 0, f), 0u);
  const std::vector<size_t> cuts = {0, 1, 38, 200, 333, 334, static_cast<size_t>(e * out * in)};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const size_t n = cuts[i + 1] - cuts[i];
    EXPECT_EQ(merge_elements(DType::kBF16, std::span(src).subspan(cuts[i] * 2, n * 2), std::span(pieces).subspan(cuts[i] * 2, n * 2), cuts[i], f), 0u);
  }
  EXPECT_EQ(pieces, whole);
  std::vector<float> merged(w.size()), want(w.size());
  to_f32(DType::kBF16, whole.data(), merged.data(), merged.size());
  to_f32(DType::kBF16, src.data(), want.data(), want.size());
  // Against the independent loop (B packed back to PEFT's k·E+e columns, A rows are already e·r+k).
  std::vector<float> packed_b(b.size());
  for (int64_t x = 0; x < e; ++x)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < r; ++k) packed_b[o * r * e + k * e + x] = b[(x * out + o) * r + k];
  EXPECT_EQ(merged, expected_merge(want, a, packed_b, e, r, out, in, 0.75, DType::kBF16));
}

TEST(LoraMerge, UntouchedTensorsShardFilesIndexAndSideFilesAreByteIdentical) {
  ScratchDir dir;
  SmallCase c = small_case(DType::kBF16);
  write_base(dir / "base", c.base, true);
  testing::write_peft_adapter(dir / "adapter", c.config, c.adapter);
  ASSERT_OK(merge(dir / "adapter", dir / "base", dir / "out"));
  auto base = SafetensorsSet::open_dir(dir / "base");
  auto out = SafetensorsSet::open_dir(dir / "out");
  ASSERT_OK(base);
  ASSERT_OK(out);
  ASSERT_EQ(out->tensors().size(), base->tensors().size());
  for (const auto& [name, entry] : base->tensors()) {
    const SafetensorsSet::Entry* o = out->find(name);
    ASSERT_NE(o, nullptr) << name;
    EXPECT_EQ(o->info->dtype, entry.info->dtype) << name;
    EXPECT_EQ(o->info->shape, entry.info->shape) << name;
    EXPECT_EQ(fs::path(o->file->path()).filename(), fs::path(entry.file->path()).filename()) << name;
    if (name != "m.proj.weight" && name != "m.experts.gate_up_proj") EXPECT_EQ(bytes_of(*out, name), bytes_of(*base, name)) << name;
    else EXPECT_NE(bytes_of(*out, name), bytes_of(*base, name)) << name;
  }
  for (const char* f : {"model.safetensors.index.json", "config.json", "tokenizer_config.json"})
    EXPECT_EQ(testing::read_bytes(dir / "out" / f), testing::read_bytes(dir / "base" / f)) << f;
}

TEST(LoraMerge, Bf16IsRoundedOnceToNearestEvenAfterTheFp32Add) {
  // W = 1 (bf16 ulp 2^-7 there), r = 1, s = 1, B·A = Δ:
  //   Δ = 2^-8: a tie -> the even neighbour 1.0;  Δ = 3·2^-8: a tie -> 1 + 2^-6 (even), not 1 + 2^-7 (truncation);
  //   Δ = 2^-8 + 2^-20: just above the tie -> 1 + 2^-7 (rounding Δ to bf16 first would give the tie, then 1.0).
  ScratchDir dir;
  const std::vector<float> deltas = {std::ldexp(1.0f, -8), 3 * std::ldexp(1.0f, -8), std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)};
  const std::vector<float> want = {1.0f, 1.0f + std::ldexp(1.0f, -6), 1.0f + std::ldexp(1.0f, -7)};
  write_base(dir / "base", {{"m.proj.weight", {3, 1}, {1.0f, 1.0f, 1.0f}, DType::kBF16}}, false);
  nlohmann::json config = testing::peft_config(1, 1);
  config["target_modules"] = {"proj"};
  testing::write_peft_adapter(dir / "adapter", config,
                              {{"base_model.model.m.proj.lora_A.weight", {1, 1}, {1.0f}}, {"base_model.model.m.proj.lora_B.weight", {3, 1}, deltas}});
  ASSERT_OK(merge(dir / "adapter", dir / "base", dir / "out"));
  auto out = SafetensorsSet::open_dir(dir / "out");
  ASSERT_OK(out);
  EXPECT_EQ(read_f32(*out, "m.proj.weight"), want);
}

TEST(LoraMerge, RefusesDeltaOnAbsentTensorOrOtherShapeNamingBothFiles) {
  ScratchDir dir;
  SmallCase c = small_case(DType::kF32);
  write_base(dir / "base", c.base, false);
  SmallCase absent = c;
  absent.config["target_modules"] = {"proj", "gone"};
  absent.adapter.push_back(t("base_model.model.m.gone.lora_A.weight", {c.r, c.in}, 31));
  absent.adapter.push_back(t("base_model.model.m.gone.lora_B.weight", {c.out, c.r}, 32));
  testing::write_peft_adapter(dir / "absent", absent.config, absent.adapter);
  auto a = merge(dir / "absent", dir / "base", dir / "out");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find((dir / "absent" / "adapter_model.safetensors").string()), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find("'m.gone.weight'"), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find((dir / "base").string()), std::string::npos) << a.status().message();

  SmallCase wide = c;
  wide.adapter[0] = t("base_model.model.m.proj.lora_A.weight", {c.r, c.in + 1}, 21);
  testing::write_peft_adapter(dir / "wide", wide.config, wide.adapter);
  auto w = merge(dir / "wide", dir / "base", dir / "out");
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find((dir / "base" / "model.safetensors").string() + ": tensor 'm.proj.weight' has shape [5, 7]"),
            std::string::npos) << w.status().message();
  EXPECT_NE(w.status().message().find((dir / "wide" / "adapter_model.safetensors").string()), std::string::npos) << w.status().message();
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(LoraMerge, MergedValueOverflowingTheDtypeIsRefused) {
  // fp16: 60000 + 10000 is finite in fp32 but Inf once rounded.
  ScratchDir dir;
  write_base(dir / "base", {{"m.proj.weight", {1, 1}, {60000.0f}, DType::kF16}}, false);
  nlohmann::json config = testing::peft_config(1, 1);
  config["target_modules"] = {"proj"};
  testing::write_peft_adapter(dir / "adapter", config,
                              {{"base_model.model.m.proj.lora_A.weight", {1, 1}, {100.0f}}, {"base_model.model.m.proj.lora_B.weight", {1, 1}, {100.0f}}});
  auto r = merge(dir / "adapter", dir / "base", dir / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tensor 'm.proj.weight'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("NaN/Inf"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// A PEFT adapter for one of the bundled checkpoints: q_proj and o_proj of layer 0 and, where `experts`, both
// expert parameters of layer 1 (r = 2, alpha = 5). Returns the HF tensors it changes.
std::vector<std::string> write_tiny_adapter(const fs::path& dir, const fs::path& base, bool experts) {
  auto set = SafetensorsSet::open_dir(base);
  EXPECT_TRUE(set.ok());
  const std::string prefix = set->find("model.language_model.embed_tokens.weight") ? "model.language_model." : "model.";
  const int64_t r = 2;
  std::vector<FloatTensor> ts;
  std::vector<std::string> changed;
  uint64_t seed = 100;
  for (const char* m : {"layers.0.self_attn.q_proj", "layers.0.self_attn.o_proj", "layers.0.mlp.gate_proj"}) {
    const Shape& s = set->find(prefix + m + ".weight")->info->shape;
    ts.push_back(t("base_model.model." + prefix + m + ".lora_A.weight", {r, s[1]}, seed++));
    ts.push_back(t("base_model.model." + prefix + m + ".lora_B.weight", {s[0], r}, seed++));
    changed.push_back(prefix + m + ".weight");
  }
  nlohmann::json config = testing::peft_config(r, 5);
  config["target_modules"] = ".*language_model\\..*\\.(q_proj|o_proj|gate_proj)";
  if (prefix == "model.") config["target_modules"] = {"q_proj", "o_proj", "gate_proj"};
  if (experts) {
    const Shape& gu = set->find(prefix + "layers.1.experts.gate_up_proj")->info->shape;
    const Shape& dn = set->find(prefix + "layers.1.experts.down_proj")->info->shape;
    const int64_t e = gu[0];
    ts.push_back(t("base_model.model." + prefix + "layers.1.experts.base_layer.lora_A.weight", {e * r, gu[2]}, seed++));
    ts.push_back(t("base_model.model." + prefix + "layers.1.experts.base_layer.lora_B.weight", {gu[1], e * r}, seed++));
    ts.push_back(t("base_model.model." + prefix + "layers.1.experts.lora_A.weight", {e * r, dn[2]}, seed++));
    ts.push_back(t("base_model.model." + prefix + "layers.1.experts.lora_B.weight", {dn[1], e * r}, seed++));
    config["target_parameters"] = {prefix + "layers.1.experts.down_proj", prefix + "layers.1.experts.gate_up_proj"};
    changed.push_back(prefix + "layers.1.experts.gate_up_proj");
    changed.push_back(prefix + "layers.1.experts.down_proj");
  }
  testing::write_peft_adapter(dir, config, ts);
  return changed;
}

// Every tensor of `merged` equals the base's, except `changed`, which equal the independent merge.
void expect_tiny_merge(const fs::path& adapter_dir, const fs::path& base_dir, const fs::path& merged_dir,
                       const std::vector<std::string>& changed) {
  auto base = SafetensorsSet::open_dir(base_dir);
  auto merged = SafetensorsSet::open_dir(merged_dir);
  ASSERT_OK(base);
  ASSERT_OK(merged);
  ASSERT_EQ(merged->tensors().size(), base->tensors().size());
  // The adapter file is not a checkpoint directory: read it as one safetensors file.
  auto file = SafetensorsFile::open(adapter_dir / "adapter_model.safetensors");
  ASSERT_OK(file);
  auto factor = [&](const std::string& key) {
    const TensorInfo* info = file->find(key);
    std::vector<float> v(info ? info->numel() : 0);
    if (info) to_f32(info->dtype, file->data(*info).data(), v.data(), v.size());
    return v;
  };
  for (const auto& [name, entry] : base->tensors()) {
    const bool is_changed = std::find(changed.begin(), changed.end(), name) != changed.end();
    if (!is_changed) {
      EXPECT_EQ(bytes_of(*merged, name), bytes_of(*base, name)) << name;
      continue;
    }
    std::string key = "base_model.model." + name.substr(0, name.size() - (name.ends_with(".weight") ? 7 : 0));
    int64_t e = 0;
    if (name.ends_with("gate_up_proj")) key = "base_model.model." + name.substr(0, name.size() - 13) + ".base_layer", e = entry.info->shape[0];
    if (name.ends_with("down_proj") && entry.info->shape.size() == 3) key = "base_model.model." + name.substr(0, name.size() - 10), e = entry.info->shape[0];
    const Shape& s = entry.info->shape;
    const int64_t out = s[s.size() - 2], in = s[s.size() - 1];
    const std::vector<float> want = expected_merge(read_f32(*base, name), factor(key + ".lora_A.weight"), factor(key + ".lora_B.weight"), e,
                                                   2, out, in, 5.0 / 2, entry.info->dtype);
    EXPECT_EQ(read_f32(*merged, name), want) << name;
    EXPECT_NE(bytes_of(*merged, name), bytes_of(*base, name)) << name;
  }
}

TEST(LoraMerge, TinyMoeVlCheckpointGetsTheIndependentMergeThroughTheCli) {
  ScratchDir dir;
  const std::vector<std::string> changed = write_tiny_adapter(dir / "adapter", tiny("tiny-26b-a4b"), true);
  std::string out;
  ASSERT_EQ(testing::run_g4convert("lora-merge --adapter " + (dir / "adapter").string() + " --base " + tiny("tiny-26b-a4b").string() +
                                       " --out " + (dir / "merged").string() + " --json",
                                   &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["merged"], changed.size());
  EXPECT_EQ(j["adapter_kind"], "peft");
  EXPECT_EQ(j["base_kind"], "hf");
  expect_tiny_merge(dir / "adapter", tiny("tiny-26b-a4b"), dir / "merged", changed);
  EXPECT_EQ(testing::read_bytes(dir / "merged" / "config.json"), testing::read_bytes(tiny("tiny-26b-a4b") / "config.json"));
}

TEST(LoraMerge, TinyE4bVlaCheckpointWithVlPrefixGetsTheIndependentMerge) {
  ScratchDir dir;
  const std::vector<std::string> changed = write_tiny_adapter(dir / "adapter", tiny("tiny-e4b-vla"), false);
  ASSERT_TRUE(changed[0].starts_with("model.language_model.")) << changed[0];
  ASSERT_OK(merge(dir / "adapter", tiny("tiny-e4b-vla"), dir / "merged"));
  expect_tiny_merge(dir / "adapter", tiny("tiny-e4b-vla"), dir / "merged", changed);
}

TEST(LoraMerge, MegatronBaseIsConvertedOnTheWayAndGivesTheSameTensors) {
  ScratchDir dir;
  const std::vector<std::string> changed = write_tiny_adapter(dir / "adapter", tiny("tiny-26b-a4b"), true);
  convert::Hf2McoreOptions to_mcore;
  to_mcore.hf = tiny("tiny-26b-a4b");
  to_mcore.out = dir / "mcore";
  to_mcore.threads = 2;
  ASSERT_OK(convert::hf2mcore(to_mcore));
  auto summary = merge(dir / "adapter", dir / "mcore", dir / "merged");
  ASSERT_OK(summary);
  EXPECT_EQ(summary->base_kind, "megatron");
  expect_tiny_merge(dir / "adapter", tiny("tiny-26b-a4b"), dir / "merged", changed);

  // An error about the converted base names the Megatron checkpoint given, not the scratch copy (gone by then).
  nlohmann::json config = testing::peft_config(2, 2);
  config["target_modules"] = {"q_proj"};
  testing::write_peft_adapter(dir / "causal", config,
                              {t("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", {2, 64}, 1),
                               t("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", {128, 2}, 2)});
  auto wrong = merge(dir / "causal", dir / "mcore", dir / "merged2");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find((dir / "mcore").string() + " (as converted to HF)"), std::string::npos) << wrong.status().message();
  EXPECT_EQ(wrong.status().message().find("g4convert-lora-merge"), std::string::npos) << wrong.status().message();
}

TEST(LoraMerge, CliRefusesRankForPeftAdapterAndOutputInsideAnInput) {
  ScratchDir dir;
  write_tiny_adapter(dir / "adapter", tiny("tiny-26b-a4b"), false);
  std::string out;
  EXPECT_EQ(testing::run_g4convert("lora-merge --adapter " + (dir / "adapter").string() + " --base " + tiny("tiny-26b-a4b").string() +
                                       " --out " + (dir / "m").string() + " --rank 4",
                                   &out),
            2);
  EXPECT_NE(out.find("--rank"), std::string::npos) << out;
  EXPECT_EQ(testing::run_g4convert("lora-merge --adapter " + (dir / "adapter").string() + " --base " + tiny("tiny-26b-a4b").string() +
                                       " --out " + (dir / "adapter" / "m").string(),
                                   &out),
            2);
  EXPECT_FALSE(fs::exists(dir / "m"));
  EXPECT_FALSE(fs::exists(dir / "adapter" / "m"));
}

}  // namespace
}  // namespace g4::lora
