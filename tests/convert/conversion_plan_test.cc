// The conversion plan and storage layout against Megatron-Bridge's scheme (megatron-bridge-layout.md §1, §4.2),
// for every preset, and the contract check catching planted mapping bugs.
#include <set>

#include <gtest/gtest.h>

#include "convert/conversion_plan.h"
#include "gemma4/presets.h"
#include "test_support.h"

namespace g4::convert {
namespace {

gemma4::ModelConfig preset_config(const std::string& name, int layers = 0,
                                  gemma4::ModelForm form = gemma4::ModelForm::kCausal) {
  const gemma4::Preset* p = gemma4::find_preset(name);
  EXPECT_NE(p, nullptr) << name;
  auto text = gemma4::preset_with_layers(*p, layers);
  EXPECT_TRUE(text.ok()) << text.status().to_string();
  gemma4::ModelConfig c;
  c.form = form;
  c.text = *text;
  return c;
}

const MegatronParam* find_param(const ConversionPlan& plan, const std::string& name) {
  for (const auto& p : plan.params)
    if (p.name == name) return &p;
  return nullptr;
}

TEST(StorageLayout, MoeAttentionGoesToPerTypeStacksAndTheRestToTheLayerStack) {
  const auto c = preset_config("26b-a4b");  // 30 layers, 5 sliding then 1 full
  const auto sliding = storage_slot("decoder.layers.{l}.self_attention.linear_qkv.weight", 7, c.text, LayerKeys::kStacked, "");
  EXPECT_EQ(sliding.key, "decoder.layers.self_attention_sliding.linear_qkv.weight");
  EXPECT_EQ(sliding.index, std::vector<int64_t>{6});  // layers 0-4 sliding, 5 full, 6 sliding, 7 sliding
  EXPECT_EQ(sliding.axes, std::vector<int64_t>{25});
  const auto global = storage_slot("decoder.layers.{l}.self_attention.linear_qkv.weight", 11, c.text, LayerKeys::kStacked, "language_model.");
  EXPECT_EQ(global.key, "language_model.decoder.layers.self_attention_global.linear_qkv.weight");
  EXPECT_EQ(global.index, std::vector<int64_t>{1});
  EXPECT_EQ(global.axes, std::vector<int64_t>{5});
  const auto mlp = storage_slot("decoder.layers.{l}.mlp.router.weight", 11, c.text, LayerKeys::kStacked, "");
  EXPECT_EQ(mlp.key, "decoder.layers.mlp.router.weight");
  EXPECT_EQ(mlp.index, std::vector<int64_t>{11});
  EXPECT_EQ(mlp.axes, std::vector<int64_t>{30});
  EXPECT_EQ(storage_slot("embedding.word_embeddings.weight", -1, c.text, LayerKeys::kStacked, "").key, "embedding.word_embeddings.weight");
}

TEST(StorageLayout, E2bDoubleWideMlpUsesPerLayerKeysWithTheTypeSuffix) {
  const auto c = preset_config("e2b");
  ASSERT_EQ(layer_keys_for(c.text), LayerKeys::kPerLayer);
  EXPECT_EQ(layer_keys_for(preset_config("e4b").text), LayerKeys::kStacked);
  EXPECT_EQ(layer_keys_for(preset_config("31b").text), LayerKeys::kStacked);
  const int full = [&] {
    for (const auto& s : c.text.layers)
      if (s.type == gemma4::LayerType::kFull) return s.index;
    return -1;
  }();
  const auto slot = storage_slot("decoder.layers.{l}.self_attention.linear_qkv.weight", full, c.text, LayerKeys::kPerLayer, "");
  EXPECT_EQ(slot.key, "decoder.layers." + std::to_string(full) + ".self_attention_global.linear_qkv.weight");
  EXPECT_TRUE(slot.index.empty() && slot.axes.empty());
  EXPECT_EQ(sharded_object_key("a._extra_state", {}, {}), "a._extra_state/shard_0_1");
  EXPECT_EQ(sharded_object_key("a._extra_state", {3, 7}, {30, 128}), "a._extra_state/shard_3.7_30.128");
}

TEST(ConversionPlan, ContractHoldsForEveryPresetInBothForms) {
  for (const auto& preset : gemma4::all_presets()) {
    for (auto form : {gemma4::ModelForm::kCausal, gemma4::ModelForm::kConditional}) {
      const auto c = preset_config(preset.name, preset.name.starts_with("tiny") ? 0 : 8, form);
      auto plan = build_plan(c, {});
      ASSERT_TRUE(plan.ok()) << preset.name << ": " << plan.status().to_string();
      EXPECT_OK(check_contract(*plan));
      EXPECT_EQ(plan->prefix, form == gemma4::ModelForm::kConditional ? "language_model." : "");
      EXPECT_EQ(plan->table->family, c.text.enable_moe_block ? "moe" : "dense") << preset.name;
    }
  }
}

TEST(ConversionPlan, QkvInterleavesEachQueryGroupWithTheLayersOwnGeometry) {
  const auto c = preset_config("26b-a4b", 6);
  auto plan = build_plan(c, {});
  ASSERT_OK(plan);
  for (const auto& layer : c.text.layers) {
    const auto* p = find_param(*plan, "decoder.layers." + std::to_string(layer.index) + ".self_attention.linear_qkv.weight");
    ASSERT_NE(p, nullptr);
    const int64_t nq = c.text.num_attention_heads, ng = layer.kv_heads, hd = layer.head_dim;
    ASSERT_EQ(p->pieces.size(), static_cast<size_t>(3 * ng));
    EXPECT_EQ(p->shape, (Shape{(nq + 2 * ng) * hd, c.text.hidden_size}));
    const std::string base = "model.layers." + std::to_string(layer.index) + ".self_attn.";
    for (int64_t g = 0; g < ng; ++g) {
      const Piece &q = p->pieces[3 * g], &k = p->pieces[3 * g + 1], &v = p->pieces[3 * g + 2];
      EXPECT_EQ(plan->hf[q.source].name, base + "q_proj.weight");
      EXPECT_EQ(q.src_row, g * nq / ng * hd);
      EXPECT_EQ(q.rows, nq / ng * hd);
      EXPECT_EQ(plan->hf[k.source].name, base + "k_proj.weight");
      EXPECT_EQ(k.src_row, g * hd);
      // K=V full layers: the V slot is a copy of K's rows (there is no v_proj).
      EXPECT_EQ(plan->hf[v.source].name, base + (layer.k_eq_v ? "k_proj.weight" : "v_proj.weight"));
      EXPECT_EQ(v.src_row, g * hd);
    }
  }
  const auto gathers = invert_plan(*plan);
  for (size_t s = 0; s < plan->hf.size(); ++s) {
    const bool k_of_keqv = plan->hf[s].name.ends_with("k_proj.weight") && c.text.layers[plan->hf[s].layer].k_eq_v;
    EXPECT_EQ(!gathers[s].duplicates.empty(), k_of_keqv) << plan->hf[s].name;
  }
}

TEST(ConversionPlan, MoeNormsAreWiredToTheBridgeNames) {
  auto plan = build_plan(preset_config("tiny-26b-a4b"), {});
  ASSERT_OK(plan);
  auto source_of = [&](const std::string& param) {
    const auto* p = find_param(*plan, param);
    return p ? plan->hf[p->pieces[0].source].name : std::string("(none)");
  };
  EXPECT_EQ(source_of("decoder.layers.1.pre_mlp_layernorm.weight"), "model.layers.1.pre_feedforward_layernorm_2.weight");
  EXPECT_EQ(source_of("decoder.layers.1.pre_shared_expert_layernorm.weight"), "model.layers.1.pre_feedforward_layernorm.weight");
  EXPECT_EQ(source_of("decoder.layers.1.mlp.post_shared_expert_layernorm.weight"), "model.layers.1.post_feedforward_layernorm_1.weight");
  EXPECT_EQ(source_of("decoder.layers.1.mlp.post_moe_layernorm.weight"), "model.layers.1.post_feedforward_layernorm_2.weight");
  EXPECT_EQ(source_of("decoder.layers.1.post_ffn_layernorm.weight"), "model.layers.1.post_feedforward_layernorm.weight");
  EXPECT_EQ(source_of("decoder.layers.1.self_attention.linear_proj.post_layernorm.weight"), "model.layers.1.post_attention_layernorm.weight");
  const auto* fc1 = find_param(*plan, "decoder.layers.1.mlp.shared_experts.linear_fc1.weight");
  ASSERT_NE(fc1, nullptr);
  EXPECT_EQ(plan->hf[fc1->pieces[0].source].name, "model.layers.1.mlp.gate_proj.weight");  // gate first
  EXPECT_EQ(plan->hf[fc1->pieces[1].source].name, "model.layers.1.mlp.up_proj.weight");
}

TEST(ConversionPlan, ExtraStateObjectsFollowTheStorageAxes) {
  const auto c = preset_config("tiny-26b-a4b");
  auto plan = build_plan(c, {});
  ASSERT_OK(plan);
  std::set<std::string> keys;
  for (const auto& e : plan->extra_state) keys.insert(e.key);
  EXPECT_TRUE(keys.count("decoder.final_layernorm._extra_state/shard_0_1"));
  EXPECT_TRUE(keys.count("decoder.layers.self_attention_global.linear_qkv._extra_state/shard_0_2"));
  const int64_t L = c.text.num_hidden_layers, E = *c.text.num_experts;
  EXPECT_TRUE(keys.count("decoder.layers.mlp.experts.experts.linear_fc1._extra_state/shard_" + std::to_string(L - 1) + "." +
                         std::to_string(E - 1) + "_" + std::to_string(L) + "." + std::to_string(E)));
  EXPECT_EQ(keys.size(), plan->extra_state.size());
}

TEST(ConversionPlan, ContractCatchesATensorConsumedByTwoLayers) {
  // Pipeline-style duplication (pitfalls.md P2): layer 1's o_proj reads layer 0's tensor.
  auto plan = build_plan(preset_config("tiny-31b"), {});
  ASSERT_OK(plan);
  MegatronParam* p1 = nullptr;
  const MegatronParam* p0 = nullptr;
  for (auto& p : plan->params) {
    if (p.name == "decoder.layers.1.self_attention.linear_proj.weight") p1 = &p;
    if (p.name == "decoder.layers.0.self_attention.linear_proj.weight") p0 = &p;
  }
  ASSERT_TRUE(p0 && p1);
  p1->pieces[0].source = p0->pieces[0].source;
  const Status s = check_contract(*plan);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model.layers."), std::string::npos) << s.message();
}

TEST(ConversionPlan, ContractCatchesAParameterRowWrittenTwice) {
  auto plan = build_plan(preset_config("tiny-e4b"), {});
  ASSERT_OK(plan);
  for (auto& p : plan->params)
    if (p.name.ends_with("mlp.linear_fc1.weight")) {
      p.pieces[1].dst_row -= 1;
      break;
    }
  const Status s = check_contract(*plan);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("linear_fc1"), std::string::npos) << s.message();
}

TEST(BindSources, MissingOptionalSharedKvBecomeFillsAndMissingRequiredTensorsAreNamed) {
  auto plan = build_plan(preset_config("tiny-e4b"), {});
  ASSERT_OK(plan);
  std::set<std::string> present;
  for (const auto& s : plan->hf)
    if (!s.optional) present.insert(s.name);
  auto with_fills = *plan;
  present.insert("lm_head.weight");  // tied, saved anyway: skipped, not an error
  auto skipped = bind_sources(with_fills, present, "ckpt");
  ASSERT_OK(skipped);
  EXPECT_EQ(*skipped, std::vector<std::string>{"lm_head.weight"});
  present.erase("lm_head.weight");
  size_t zeros = 0, ones = 0;
  for (const auto& p : with_fills.params)
    for (const auto& piece : p.pieces) zeros += piece.fill == Fill::kZeros, ones += piece.fill == Fill::kOnes;
  EXPECT_GT(zeros, 0u);
  EXPECT_GT(ones, 0u);  // k_norm of shared layers: ones, as Megatron initialises it

  auto missing = *plan;
  present.erase("model.layers.0.self_attn.o_proj.weight");
  auto s = bind_sources(missing, present, "ckpt");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << s.status().message();

  auto unexpected = *plan;
  present.insert("model.layers.0.self_attn.o_proj.weight");
  present.insert("model.layers.0.mystery.weight");
  s = bind_sources(unexpected, present, "ckpt");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("mystery"), std::string::npos) << s.status().message();
}

}  // namespace
}  // namespace g4::convert
