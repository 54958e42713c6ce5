#include "gemma4/presets.h"

#include <map>

#include "gemma4/hf_tensors.h"
#include "test_support.h"

namespace g4::gemma4 {
namespace {

std::map<std::string, Shape> shapes_of(const char* preset, ModelForm form = ModelForm::kConditional) {
  ModelConfig c;
  c.form = form;
  c.text = find_preset(preset)->text;
  std::map<std::string, Shape> m;
  for (const HfTensor& t : hf_text_tensors(c))
    if (!t.optional) m[t.name] = t.shape;
  return m;
}

// gemma4-hf.md §2.5, the worked shapes of the released checkpoints.
TEST(Presets, ReleasedShapesMatchTheSpecTable) {
  auto e2b = shapes_of("e2b");
  const std::string p = "model.language_model.layers.";
  EXPECT_EQ(e2b[p + "0.self_attn.q_proj.weight"], (Shape{2048, 1536}));
  EXPECT_EQ(e2b[p + "4.self_attn.k_proj.weight"], (Shape{512, 1536}));
  EXPECT_EQ(e2b[p + "14.self_attn.v_proj.weight"], (Shape{512, 1536}));
  EXPECT_EQ(e2b[p + "15.mlp.gate_proj.weight"], (Shape{12288, 1536}));
  EXPECT_EQ(e2b.count(p + "15.self_attn.k_proj.weight"), 0u) << "KV-shared layers own no K/V";
  EXPECT_EQ(e2b["model.language_model.embed_tokens_per_layer.weight"], (Shape{262144, 8960}));
  EXPECT_EQ(e2b["model.language_model.per_layer_model_projection.weight"], (Shape{8960, 1536}));

  auto e4b = shapes_of("e4b");
  EXPECT_EQ(e4b[p + "5.self_attn.k_proj.weight"], (Shape{1024, 2560}));
  EXPECT_EQ(e4b["model.language_model.embed_tokens_per_layer.weight"], (Shape{262144, 10752}));

  auto moe = shapes_of("26b-a4b");
  EXPECT_EQ(moe[p + "0.self_attn.k_proj.weight"], (Shape{2048, 2816}));
  EXPECT_EQ(moe[p + "5.self_attn.q_proj.weight"], (Shape{8192, 2816}));
  EXPECT_EQ(moe[p + "5.self_attn.k_proj.weight"], (Shape{1024, 2816}));
  EXPECT_EQ(moe.count(p + "5.self_attn.v_proj.weight"), 0u) << "K=V layers have no v_proj";
  EXPECT_EQ(moe[p + "0.experts.gate_up_proj"], (Shape{128, 1408, 2816}));
  EXPECT_EQ(moe[p + "0.experts.down_proj"], (Shape{128, 2816, 704}));
  EXPECT_EQ(moe[p + "0.router.proj.weight"], (Shape{128, 2816}));
  EXPECT_EQ(moe[p + "0.mlp.gate_proj.weight"], (Shape{2112, 2816}));

  auto dense = shapes_of("31b");
  EXPECT_EQ(dense[p + "0.self_attn.q_proj.weight"], (Shape{8192, 5376}));
  EXPECT_EQ(dense[p + "5.self_attn.q_proj.weight"], (Shape{16384, 5376}));
  EXPECT_EQ(dense[p + "5.self_attn.k_proj.weight"], (Shape{2048, 5376}));
  EXPECT_EQ(dense[p + "5.self_attn.o_proj.weight"], (Shape{5376, 16384}));
}

// The full 26B-A4B-it checkpoint has 1,013 tensors (pitfalls.md §0); its vision tower holds
// 27 layers × 13 + patch embedder 2 + embed_vision 1 + std_bias/std_scale 2 = 356, so the text part is 657.
TEST(Presets, MoeTextTensorCountMatchesTheReleasedCheckpoint) { EXPECT_EQ(shapes_of("26b-a4b").size(), 657u); }

TEST(Presets, CausalFormUsesTheShortPrefix) {
  auto m = shapes_of("tiny-31b", ModelForm::kCausal);
  EXPECT_TRUE(m.count("model.embed_tokens.weight"));
  EXPECT_TRUE(m.count("model.layers.0.layer_scalar"));
  EXPECT_FALSE(m.count("lm_head.weight")) << "tied head is not saved";
}

TEST(Presets, EveryPresetIsIdentifiedAsItself) {
  for (const Preset& p : all_presets()) {
    EXPECT_EQ(identify_variant(p.text), p.name);
    EXPECT_EQ(structure_of(p.text), p.structure) << p.name;
  }
}

TEST(Presets, FewerLayersKeepAValidScheduleAndSayHowManyOfTheOriginal) {
  for (const Preset& p : all_presets()) {
    for (int layers = 1; layers <= std::min<int>(8, static_cast<int>(p.text.num_hidden_layers)); ++layers) {
      auto t = preset_with_layers(p, layers);
      ASSERT_OK(t);
      EXPECT_EQ(t->layers.size(), static_cast<size_t>(layers));
      EXPECT_EQ(t->layers.back().type, LayerType::kFull);
    }
  }
  auto e2b6 = preset_with_layers(*find_preset("e2b"), 6);
  ASSERT_OK(e2b6);
  EXPECT_EQ(identify_variant(*e2b6), "e2b (6 of 35 layers)");
  EXPECT_GT(e2b6->num_kv_shared_layers, 0) << "a six-layer E2B still exercises KV sharing";
  EXPECT_FALSE(preset_with_layers(*find_preset("tiny-e2b"), 7).ok());
}

TEST(Presets, ChangedDimensionsAreOnlyLikeAPreset) {
  TextConfig t = find_preset("31b")->text;
  t.hidden_size = 4096;
  EXPECT_EQ(identify_variant(t), "31b-like");
}

}  // namespace
}  // namespace g4::gemma4
