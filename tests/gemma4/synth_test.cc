#include "gemma4/synth.h"

#include <cmath>

#include "gemma4/presets.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::gemma4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

SynthOptions options(const std::string& preset, const fs::path& out) {
  SynthOptions o;
  o.preset = preset;
  o.out = out;
  return o;
}

TEST(Synth, IsDeterministicPerSeedAndValuesRegenerateFromTheirName) {
  ScratchDir dir;
  ThreadPool pool(2);
  SynthOptions a = options("tiny-26b-a4b", dir / "a");
  a.pool = &pool;
  ASSERT_OK(synth_checkpoint(a));
  SynthOptions b = options("tiny-26b-a4b", dir / "b");
  ASSERT_OK(synth_checkpoint(b));
  SynthOptions c = options("tiny-26b-a4b", dir / "c");
  c.seed = 7;
  ASSERT_OK(synth_checkpoint(c));
  EXPECT_EQ(testing::read_bytes(dir / "a" / "model.safetensors"), testing::read_bytes(dir / "b" / "model.safetensors"));
  EXPECT_NE(testing::read_bytes(dir / "a" / "model.safetensors"), testing::read_bytes(dir / "c" / "model.safetensors"));

  auto set = SafetensorsSet::open_dir(dir / "a");
  ASSERT_OK(set);
  const std::string name = "model.layers.3.experts.down_proj";
  const auto* e = set->find(name);
  ASSERT_NE(e, nullptr);
  std::vector<float> values(e->info->numel());
  to_f32(DType::kBF16, set->data(*e).data(), values.data(), values.size());
  for (size_t i = 0; i < values.size(); i += 97)
    EXPECT_EQ(values[i], bf16_to_f32(f32_to_bf16(synth_value(0, synth_name_hash(name), TensorRole::kExperts, i))));
}

TEST(Synth, ScalesAndNormsAreDrawnAwayFromOne) {
  ScratchDir dir;
  SynthOptions o = options("tiny-26b-a4b", dir / "m");
  o.dtype = DType::kF32;
  ASSERT_OK(synth_checkpoint(o));
  auto set = SafetensorsSet::open_dir(dir / "m");
  ASSERT_OK(set);
  size_t checked = 0;
  for (const auto& [name, e] : set->tensors()) {
    bool scalar = name.ends_with("layer_scalar");
    bool near_one_forbidden = name.ends_with("norm.weight") || name.ends_with("layernorm_1.weight") ||
                              name.ends_with("layernorm_2.weight") || name.ends_with("router.scale") ||
                              name.ends_with("per_expert_scale");
    if (!scalar && !near_one_forbidden) continue;
    std::vector<float> v(e.info->numel());
    to_f32(DType::kF32, set->data(e).data(), v.data(), v.size());
    for (float x : v) {
      if (scalar) EXPECT_TRUE(x >= 0.2f && x < 0.9f) << name << " " << x;
      else EXPECT_GE(std::fabs(x - 1.0f), 0.0999f) << name << " " << x;
    }
    ++checked;
  }
  // Per layer: 9 norms, router.scale, per_expert_scale, layer_scalar; plus the final norm.
  EXPECT_EQ(checked, 6u * 12 + 1) << "every norm, scalar and router scale was checked";
}

TEST(Synth, WritesTheConditionalFormAndSharedKvOnRequest) {
  ScratchDir dir;
  SynthOptions o = options("tiny-e2b", dir / "m");
  o.form = ModelForm::kConditional;
  o.with_shared_kv = true;
  auto summary = synth_checkpoint(o);
  ASSERT_OK(summary);
  auto set = SafetensorsSet::open_dir(dir / "m");
  ASSERT_OK(set);
  EXPECT_NE(set->find("model.language_model.layers.4.self_attn.k_proj.weight"), nullptr);
  EXPECT_NE(set->find("model.language_model.layers.4.self_attn.v_proj.weight"), nullptr);
  EXPECT_EQ(set->find("model.layers.0.layer_scalar"), nullptr);
  auto config = load_config((dir / "m" / "config.json").string());
  ASSERT_OK(config);
  EXPECT_EQ(config->form, ModelForm::kConditional);
}

TEST(Synth, ShardsLikeTransformersAndRefusesToOverwrite) {
  ScratchDir dir;
  SynthOptions o = options("tiny-31b", dir / "m");
  o.max_shard_bytes = 100'000;
  auto summary = synth_checkpoint(o);
  ASSERT_OK(summary);
  EXPECT_GT(summary->shards, 1u);
  EXPECT_TRUE(fs::exists(dir / "m" / "model.safetensors.index.json"));
  auto set = SafetensorsSet::open_dir(dir / "m");
  ASSERT_OK(set);
  EXPECT_EQ(set->tensors().size(), summary->tensors);
  auto again = synth_checkpoint(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already exists"), std::string::npos);
}

TEST(Synth, RejectsUnknownPresetsAndImpossibleRequests) {
  ScratchDir dir;
  EXPECT_FALSE(synth_checkpoint(options("gemma-2b", dir / "x")).ok());
  SynthOptions o = options("tiny-31b", dir / "x");
  o.with_shared_kv = true;
  EXPECT_FALSE(synth_checkpoint(o).ok());
  o = options("tiny-31b", dir / "x");
  o.layers = 99;
  EXPECT_FALSE(synth_checkpoint(o).ok());
  EXPECT_FALSE(fs::exists(dir / "x"));
}

}  // namespace
}  // namespace g4::gemma4
