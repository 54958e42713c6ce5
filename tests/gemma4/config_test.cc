#include "gemma4/config.h"

#include "gemma4/presets.h"
#include "test_support.h"

namespace g4::gemma4 {
namespace {
using json = nlohmann::json;

// A flat Gemma4ForCausalLM config in the released form (global_head_dim, num_global_key_value_heads).
json released_26b_like() {
  return json::parse(R"({
    "architectures": ["Gemma4ForCausalLM"], "model_type": "gemma4_text",
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 48, "num_hidden_layers": 6,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "global_head_dim": 64,
    "num_global_key_value_heads": 1, "attention_k_eq_v": true, "enable_moe_block": true,
    "num_experts": 6, "top_k_experts": 2, "moe_intermediate_size": 16, "hidden_size_per_layer_input": 0,
    "sliding_window": 4, "final_logit_softcapping": 30.0, "use_bidirectional_attention": "vision",
    "layer_types": ["sliding_attention","sliding_attention","full_attention","sliding_attention","sliding_attention","full_attention"]
  })");
}

Result<ModelConfig> parse(const json& j) { return parse_config_json(j, "config.json"); }

std::string error_of(const json& j) {
  auto c = parse(j);
  return c.ok() ? std::string("(parsed)") : c.status().message();
}

TEST(Config, ParsesTheReleasedFlatForm) {
  auto c = parse(released_26b_like());
  ASSERT_OK(c);
  EXPECT_EQ(c->form, ModelForm::kCausal);
  EXPECT_EQ(c->text_prefix(), "model.");
  const auto& L = c->text.layers;
  ASSERT_EQ(L.size(), 6u);
  EXPECT_EQ(L[0].head_dim, 32);
  EXPECT_EQ(L[0].kv_heads, 2);
  EXPECT_FALSE(L[0].k_eq_v);
  EXPECT_EQ(L[2].head_dim, 64);
  EXPECT_EQ(L[2].kv_heads, 1);
  EXPECT_TRUE(L[2].k_eq_v);
  EXPECT_TRUE(L[5].has_moe);
  EXPECT_FALSE(c->text.has_ple());
}

TEST(Config, ParsesThePerLayerConfigFormOfNewerTransformers) {
  json j = released_26b_like();
  j.erase("global_head_dim");
  j.erase("num_global_key_value_heads");
  j["per_layer_config"] = {{"2", {{"head_dim", 64}, {"num_key_value_heads", 1}}}, {"5", {{"head_dim", 64}, {"num_key_value_heads", 1}}}};
  auto c = parse(j);
  ASSERT_OK(c);
  EXPECT_EQ(c->text.layers[2].head_dim, 64);
  EXPECT_EQ(c->text.layers[5].kv_heads, 1);
  EXPECT_EQ(c->text.layers[3].head_dim, 32);
  // With per_layer_config present, a full layer it does not list keeps the base head_dim (transformers >= 5.15).
  j["per_layer_config"].erase("5");
  j["num_key_value_heads"] = 1;
  auto partial = parse(j);
  ASSERT_OK(partial);
  EXPECT_EQ(partial->text.layers[5].head_dim, 32);
}

TEST(Config, RejectsPerLayerConfigThatContradictsTheFlatFields) {
  json j = released_26b_like();
  j["per_layer_config"] = {{"2", {{"head_dim", 128}, {"num_key_value_heads", 1}}}, {"5", {{"head_dim", 64}, {"num_key_value_heads", 1}}}};
  EXPECT_NE(error_of(j).find("per_layer_config.2.head_dim=128 contradicts global_head_dim=64"), std::string::npos) << error_of(j);
  j["per_layer_config"] = {{"9", {{"head_dim", 64}}}};
  EXPECT_NE(error_of(j).find("per_layer_config.9"), std::string::npos);
  j["per_layer_config"] = {{"2", {{"sliding_window", 8}}}};
  EXPECT_NE(error_of(j).find("per_layer_config.2.sliding_window"), std::string::npos);
}

TEST(Config, ParsesTheConditionalFormWithTowersPassedThrough) {
  json j = {{"architectures", {"Gemma4ForConditionalGeneration"}}, {"model_type", "gemma4"},
            {"text_config", released_26b_like()}, {"vision_config", {{"hidden_size", 32}}}, {"audio_config", nullptr},
            {"image_token_id", 4}, {"dtype", "bfloat16"}};
  j["text_config"].erase("architectures");
  auto c = parse(j);
  ASSERT_OK(c);
  EXPECT_EQ(c->form, ModelForm::kConditional);
  EXPECT_EQ(c->text_prefix(), "model.language_model.");
  EXPECT_EQ(c->vision_config["hidden_size"], 32);
  EXPECT_TRUE(c->audio_config.is_null());
  EXPECT_EQ(c->wrapper_fields["image_token_id"], 4);
  EXPECT_EQ(c->dtype, "bfloat16");
  json out = to_hf_json(*c);
  EXPECT_EQ(out["image_token_id"], 4);
  EXPECT_EQ(out["vision_config"]["hidden_size"], 32);
  EXPECT_EQ(out["text_config"]["model_type"], "gemma4_text");
}

TEST(Config, ErrorsNameTheFieldAndTheFile) {
  json j = released_26b_like();
  j["hidden_size"] = "64";
  EXPECT_EQ(error_of(j), "config.json: hidden_size: expected an integer, got \"64\"");
  j = {{"model_type", "gemma4"}, {"text_config", released_26b_like()}};
  j["text_config"]["num_attention_heads"] = true;
  EXPECT_EQ(error_of(j).rfind("config.json: text_config.num_attention_heads: expected an integer", 0), 0u) << error_of(j);
  EXPECT_NE(error_of(json::array()).find("not a JSON object"), std::string::npos);
  auto bad_json = parse_config("{\"a\": ", "broken/config.json");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_EQ(bad_json.status().message().rfind("broken/config.json: not valid JSON", 0), 0u);
}

TEST(Config, IntegralFloatsAreIntegersButHugeOrFractionalOnesAreErrors) {
  json j = released_26b_like();
  j["hidden_size"] = 64.0;
  EXPECT_OK(parse(j));
  j["hidden_size"] = 6.2e43;  // found by fuzz_config: casting it to int64 was undefined behaviour
  EXPECT_NE(error_of(j).find("hidden_size: expected an integer"), std::string::npos) << error_of(j);
  j["hidden_size"] = 64.5;
  EXPECT_NE(error_of(j).find("hidden_size: expected an integer"), std::string::npos);
}

TEST(Config, RejectsOtherModelsAndContradictoryClassNames) {
  json j = released_26b_like();
  j["model_type"] = "gemma3_text";
  EXPECT_NE(error_of(j).find("model_type 'gemma3_text' is not Gemma 4"), std::string::npos);
  j = released_26b_like();
  j["architectures"] = {"Gemma4ForConditionalGeneration"};
  EXPECT_NE(error_of(j).find("architectures"), std::string::npos);
}

TEST(Config, AcceptsTheDialectsOfOtherTools) {
  json j = released_26b_like();
  j.erase("top_k_experts");
  j.erase("moe_intermediate_size");
  j["num_experts_per_tok"] = 2;
  j["expert_intermediate_size"] = 16;
  auto c = parse(j);
  ASSERT_OK(c);
  EXPECT_EQ(*c->text.top_k_experts, 2);
  EXPECT_EQ(*c->text.moe_intermediate_size, 16);
  j["top_k_experts"] = 3;
  EXPECT_NE(error_of(j).find("top_k_experts: 3 contradicts num_experts_per_tok=2"), std::string::npos);

  // sglang style: head_dim is the full-attention width and swa_head_dim the sliding one.
  json s = released_26b_like();
  s.erase("global_head_dim");
  s["head_dim"] = 64;
  s["swa_head_dim"] = 32;
  auto sg = parse(s);
  ASSERT_OK(sg);
  EXPECT_EQ(sg->text.layers[0].head_dim, 32);
  EXPECT_EQ(sg->text.layers[2].head_dim, 64);
}

TEST(Config, NullPleWidthDisablesPleAndAbsentKeepsTransformersDefault) {
  json j = released_26b_like();
  j["hidden_size_per_layer_input"] = nullptr;
  ASSERT_OK(parse(j));
  EXPECT_FALSE(parse(j)->text.has_ple());
  j.erase("hidden_size_per_layer_input");
  EXPECT_EQ(parse(j)->text.hidden_size_per_layer_input, 256) << "transformers' class default (pitfalls.md P6)";
}

TEST(Config, AbsurdDepthIsRejectedBeforeAnythingIsBuiltForIt) {
  json j = released_26b_like();
  j.erase("layer_types");
  j["num_hidden_layers"] = int64_t{6222222222222};  // fuzz_config: deriving the default pattern ran out of memory
  EXPECT_NE(error_of(j).find("num_hidden_layers: 6222222222222 is not in [1, 100000]"), std::string::npos) << error_of(j);
}

TEST(Config, DerivesTheDefaultPatternWhenLayerTypesIsAbsent) {
  json j = released_26b_like();
  j.erase("layer_types");
  j["num_hidden_layers"] = 12;
  auto c = parse(j);
  ASSERT_OK(c);
  for (int l = 0; l < 12; ++l)
    EXPECT_EQ(c->text.layers[l].type, (l == 5 || l == 11) ? LayerType::kFull : LayerType::kSliding) << l;
}

TEST(Config, WrittenConfigParsesBackToTheSameSchedule) {
  for (const Preset& p : all_presets()) {
    for (ModelForm form : {ModelForm::kCausal, ModelForm::kConditional}) {
      ModelConfig c;
      c.form = form;
      c.text = p.text;
      json j = to_hf_json(c);
      auto back = parse(j);
      ASSERT_OK(back);
      EXPECT_EQ(back->form, form);
      ASSERT_EQ(back->text.layers.size(), p.text.layers.size()) << p.name;
      for (size_t l = 0; l < p.text.layers.size(); ++l) {
        const auto &a = p.text.layers[l], &b = back->text.layers[l];
        EXPECT_EQ(a.head_dim, b.head_dim);
        EXPECT_EQ(a.kv_heads, b.kv_heads);
        EXPECT_EQ(a.kv_source, b.kv_source);
        EXPECT_EQ(a.mlp_width, b.mlp_width);
      }
      // Every architecture field explicit (P6), including the ones equal to transformers' defaults.
      const json& t = form == ModelForm::kCausal ? j : j["text_config"];
      for (const char* key : {"hidden_size_per_layer_input", "num_kv_shared_layers", "attention_k_eq_v", "enable_moe_block",
                              "use_double_wide_mlp", "layer_types", "rope_parameters", "final_logit_softcapping",
                              "sliding_window", "per_layer_config", "num_global_key_value_heads", "global_head_dim"})
        EXPECT_TRUE(t.contains(key)) << p.name << " lacks " << key;
      // Parsing the per_layer_config alone (as transformers >= 5.15 does) gives the same geometry.
      json newer = t;
      newer.erase("global_head_dim");
      newer.erase("num_global_key_value_heads");
      auto only_per_layer = parse(newer);
      ASSERT_OK(only_per_layer);
      for (size_t l = 0; l < p.text.layers.size(); ++l) EXPECT_EQ(only_per_layer->text.layers[l].kv_heads, p.text.layers[l].kv_heads);
    }
  }
}

// A 200 KB config.json nested 100k deep under a field the reader copies, dumps or descends into used to overflow
// the stack (SIGSEGV); the depth is refused at parse time, naming the file.
TEST(Config, DeepNestingAnywhereIsRefusedAtParseTimeNamingTheFile) {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  const std::string text_config = released_26b_like().dump();
  for (const std::string& text : {
           "{\"model_type\": \"gemma4\", \"text_config\": " + deep + "}",
           "{\"model_type\": \"gemma4\", \"text_config\": " + text_config + ", \"vision_config\": {\"a\": " + deep + "}}",
           text_config.substr(0, text_config.size() - 1) + ", \"rope_parameters\": {\"full_attention\": " + deep + "}}",
           "{\"model_type\": \"gemma4_text\", \"hidden_size\": " + deep + "}"}) {
    auto c = parse_config(text, "deep/config.json");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().message().rfind("deep/config.json: JSON nests deeper than 64 levels", 0), 0u) << c.status().message();
  }
}

}  // namespace
}  // namespace g4::gemma4
