#include "gemma4/config.h"

#include "gemma4/presets.h"
#include "test_support.h"

namespace g4::gemma4 {
namespace {
using json = nlohmann::json;

TextConfig text_of(const char* preset) { return find_preset(preset)->text; }

TEST(Schedule, E2bSharesFromLayers13And14WithDoubleWideMlpOnTheTail) {
  TextConfig t = text_of("e2b");
  ASSERT_EQ(t.layers.size(), 35u);
  for (int l = 0; l < 35; ++l) {
    const LayerSpec& s = t.layers[l];
    EXPECT_EQ(s.type, (l % 5 == 4) ? LayerType::kFull : LayerType::kSliding) << l;
    EXPECT_EQ(s.kv_shared, l >= 15) << l;
    EXPECT_EQ(s.mlp_width, l >= 15 ? 12288 : 6144) << l;
    EXPECT_EQ(s.kv_source, l < 15 ? -1 : s.type == LayerType::kFull ? 14 : 13) << l;
    EXPECT_EQ(s.head_dim, s.type == LayerType::kFull ? 512 : 256);
    EXPECT_EQ(s.kv_heads, 1) << "num_global_key_value_heads is null on E-series (P3)";
  }
  EXPECT_TRUE(t.layers[13].stores_kv);
  EXPECT_TRUE(t.layers[14].stores_kv);
}

TEST(Schedule, E4bSharesFromLayers22And23) {
  TextConfig t = text_of("e4b");
  EXPECT_EQ(t.first_shared_layer(), 24);
  EXPECT_EQ(t.layers[24].kv_source, 22);
  EXPECT_EQ(t.layers[29].kv_source, 23);
  EXPECT_EQ(t.layers[41].kv_source, 23);
  EXPECT_EQ(t.layers[41].mlp_width, 10240) << "no double-wide MLP on E4B";
}

TEST(Schedule, KeqVLayersUseGlobalKvHeads) {
  TextConfig t = text_of("26b-a4b");
  EXPECT_EQ(t.layers[5].kv_heads, 2);
  EXPECT_TRUE(t.layers[5].k_eq_v);
  EXPECT_EQ(t.layers[4].kv_heads, 8);
  EXPECT_FALSE(t.layers[4].k_eq_v);
  TextConfig d = text_of("31b");
  EXPECT_EQ(d.layers[59].kv_heads, 4);
  EXPECT_EQ(d.layers[59].head_dim, 512);
}

Status schedule_with(TextConfig t) { return derive_schedule(t, json()); }

TEST(Schedule, RejectsALastLayerThatIsNotFull) {
  TextConfig t = text_of("tiny-31b");
  t.layer_types.back() = LayerType::kSliding;
  Status s = schedule_with(t);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layer_types[5]: the last layer must be full_attention"), std::string::npos) << s.message();
}

TEST(Schedule, RejectsSharedLayersWithoutASourceOfTheirType) {
  TextConfig t = text_of("tiny-e4b");
  t.layer_types = {LayerType::kSliding, LayerType::kSliding, LayerType::kSliding, LayerType::kSliding, LayerType::kFull, LayerType::kFull};
  Status s = schedule_with(t);  // layers 4-5 shared, no full layer before 4
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no full_attention layer precedes the shared block at 4"), std::string::npos) << s.message();
}

TEST(Schedule, RejectsContradictionsWithAMessageNamingTheField) {
  TextConfig t = text_of("tiny-26b-a4b");
  t.layer_types.pop_back();
  EXPECT_NE(schedule_with(t).message().find("layer_types: has 5 entries but num_hidden_layers is 6"), std::string::npos);
  t = text_of("tiny-26b-a4b");
  t.top_k_experts = 7;
  EXPECT_NE(schedule_with(t).message().find("top_k_experts: 7 is not in [1, num_experts=6]"), std::string::npos);
  t = text_of("tiny-26b-a4b");
  t.num_attention_heads = 3;
  EXPECT_NE(schedule_with(t).message().find("not a multiple of its 2 KV heads"), std::string::npos);
  t = text_of("tiny-26b-a4b");
  t.num_kv_shared_layers = 6;
  EXPECT_NE(schedule_with(t).message().find("num_kv_shared_layers: 6 must be in [0, num_hidden_layers=6)"), std::string::npos);
  t = text_of("tiny-26b-a4b");
  t.head_dim = 31;
  EXPECT_NE(schedule_with(t).message().find("head_dim 31 must be positive and even"), std::string::npos);
  t = text_of("tiny-26b-a4b");
  t.moe_intermediate_size.reset();
  EXPECT_NE(schedule_with(t).message().find("moe_intermediate_size: required"), std::string::npos);
}

TEST(Schedule, SharedLayerGeometryMustMatchItsSource) {
  TextConfig t = text_of("tiny-e4b");
  json per_layer = {{"2", {{"head_dim", 64}}}, {"5", {{"head_dim", 32}}}};
  t.global_head_dim_given = false;
  Status s = derive_schedule(t, per_layer);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layer 5 shares K/V of layer 2"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace g4::gemma4
