// The PEFT adapter reader: keys to HF tensors as peft 0.21.2 saves them, expert unpacking, scales, refusals.
#include "lora/peft_adapter.h"

#include <cmath>
#include <fstream>

#include "lora/peft_fixture.h"
#include "lora/peft_pattern.h"
#include "test_support.h"

namespace g4::lora {
namespace {

using testing::FloatTensor;
using testing::ScratchDir;
using testing::test_values;

constexpr const char* kVl = "base_model.model.model.language_model.layers.";

FloatTensor t(const std::string& name, Shape shape, uint64_t seed) {
  const size_t n = static_cast<size_t>(*checked_numel(shape));
  return {name, std::move(shape), test_values(seed, n)};
}

// q_proj (lora.Linear, r=2) of layer 0 and both expert parameters of layer 1 (E=3, r=2): the keys peft 0.21.2
// saved for Gemma4ForConditionalGeneration with target_parameters [gate_up_proj, down_proj] (printed from real peft).
std::vector<FloatTensor> linear_and_experts(int64_t e = 3, int64_t r = 2) {
  return {t(std::string(kVl) + "0.self_attn.q_proj.lora_A.weight", {r, 64}, 1),
          t(std::string(kVl) + "0.self_attn.q_proj.lora_B.weight", {128, r}, 2),
          t(std::string(kVl) + "1.experts.base_layer.lora_A.weight", {e * r, 64}, 3),
          t(std::string(kVl) + "1.experts.base_layer.lora_B.weight", {32, e * r}, 4),
          t(std::string(kVl) + "1.experts.lora_A.weight", {e * r, 16}, 5),
          t(std::string(kVl) + "1.experts.lora_B.weight", {64, e * r}, 6)};
}

nlohmann::json linear_and_experts_config() {
  nlohmann::json c = testing::peft_config(2, 4);
  c["target_modules"] = ".*language_model\\..*\\.(q_proj|o_proj)";
  c["target_parameters"] = {"model.language_model.layers.1.experts.gate_up_proj", "model.language_model.layers.1.experts.down_proj"};
  return c;
}

TEST(PeftAdapter, MapsLinearKeysToWeightAndNestedExpertKeysToGateUpInnerDownOuter) {
  ScratchDir dir;
  testing::write_peft_adapter(dir.path(), linear_and_experts_config(), linear_and_experts());
  auto adapter = PeftAdapter::open(dir.path());
  ASSERT_OK(adapter);
  ASSERT_EQ(adapter->deltas().size(), 3u);
  const PeftDelta* q = adapter->find("model.language_model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->experts, 0);
  EXPECT_EQ(q->rank, 2);
  EXPECT_EQ(q->in, 64);
  EXPECT_EQ(q->out, 128);
  EXPECT_EQ(q->scale, 2.0);
  const PeftDelta* gate_up = adapter->find("model.language_model.layers.1.experts.gate_up_proj");
  ASSERT_NE(gate_up, nullptr);
  EXPECT_EQ(gate_up->key_a, std::string(kVl) + "1.experts.base_layer.lora_A.weight");
  EXPECT_EQ(gate_up->experts, 3);
  EXPECT_EQ(gate_up->in, 64);
  EXPECT_EQ(gate_up->out, 32);
  const PeftDelta* down = adapter->find("model.language_model.layers.1.experts.down_proj");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->key_a, std::string(kVl) + "1.experts.lora_A.weight");
  EXPECT_EQ(down->in, 16);
  EXPECT_EQ(down->out, 64);
}

TEST(PeftAdapter, OneTargetedExpertParameterHasNoBaseLayerLevel) {
  for (const char* p : {"gate_up_proj", "down_proj"}) {
    ScratchDir dir;
    nlohmann::json c = testing::peft_config(2, 2);
    c["target_parameters"] = {std::string("experts.") + p};  // a suffix entry, as PEFT matches them
    const bool gate_up = std::string(p) == "gate_up_proj";
    testing::write_peft_adapter(dir.path(), c,
                                {t(std::string(kVl) + "4.experts.lora_A.weight", {6, gate_up ? 64 : 16}, 1),
                                 t(std::string(kVl) + "4.experts.lora_B.weight", {gate_up ? 32 : 64, 6}, 2)});
    auto adapter = PeftAdapter::open(dir.path());
    ASSERT_OK(adapter);
    ASSERT_EQ(adapter->deltas().size(), 1u);
    EXPECT_EQ(adapter->deltas()[0].tensor, std::string("model.language_model.layers.4.experts.") + p);
    EXPECT_EQ(adapter->deltas()[0].scale, 1.0);
  }
}

TEST(PeftAdapter, UnpacksExpertRowsExpertMajorAndColumnsRankMajor) {
  // E=3, r=2 (E != r, so a swapped order reads other elements): lora_A row e·r+k, lora_B column k·E+e.
  ScratchDir dir;
  const int64_t e_count = 3, r = 2;
  testing::write_peft_adapter(dir.path(), linear_and_experts_config(), linear_and_experts(e_count, r));
  auto adapter = PeftAdapter::open(dir.path());
  ASSERT_OK(adapter);
  const PeftDelta* down = adapter->find("model.language_model.layers.1.experts.down_proj");
  ASSERT_NE(down, nullptr);
  auto f = adapter->factors(static_cast<size_t>(down - adapter->deltas().data()));
  ASSERT_OK(f);
  const std::vector<float> a = test_values(5, static_cast<size_t>(e_count * r * 16)), b = test_values(6, static_cast<size_t>(64 * e_count * r));
  ASSERT_EQ(f->a.size(), a.size());
  ASSERT_EQ(f->b.size(), b.size());
  for (int64_t e = 0; e < e_count; ++e)
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t j = 0; j < 16; ++j) ASSERT_EQ(f->a[(e * r + k) * 16 + j], a[(e * r + k) * 16 + j]) << e << "," << k;
      for (int64_t o = 0; o < 64; ++o) ASSERT_EQ(f->b[(e * 64 + o) * r + k], b[o * r * e_count + k * e_count + e]) << e << "," << k;
    }
  // The expert-major column order would differ.
  EXPECT_NE(f->b[(1 * 64 + 0) * r + 0], b[0 * r * e_count + 1 * r + 0]);
}

TEST(PeftAdapter, RankAndAlphaPatternsFirstMatchingKeyAndRsloraScale) {
  ScratchDir dir;
  nlohmann::ordered_json c = testing::peft_config(8, 16);
  c["target_modules"] = {"q_proj", "o_proj"};
  // Both keys match layers.0's q_proj; PEFT takes the first in file order, here not the sorted order.
  c["rank_pattern"] = nlohmann::ordered_json::object();
  c["rank_pattern"]["q_proj"] = 4;
  c["rank_pattern"]["layers\\.0\\.self_attn\\.q_proj"] = 2;
  c["alpha_pattern"] = {{"o_proj", 3}};
  testing::write_peft_adapter(dir.path(), nlohmann::json::parse(c.dump()),
                              {t(std::string(kVl) + "0.self_attn.q_proj.lora_A.weight", {4, 64}, 1),
                               t(std::string(kVl) + "0.self_attn.q_proj.lora_B.weight", {128, 4}, 2),
                               t(std::string(kVl) + "1.self_attn.q_proj.lora_A.weight", {4, 64}, 1),
                               t(std::string(kVl) + "1.self_attn.q_proj.lora_B.weight", {128, 4}, 2),
                               t(std::string(kVl) + "1.self_attn.o_proj.lora_A.weight", {8, 128}, 1),
                               t(std::string(kVl) + "1.self_attn.o_proj.lora_B.weight", {64, 8}, 2)});
  // nlohmann::json sorts keys: rewrite the config from ordered_json to keep the file order.
  std::ofstream(dir / "adapter_config.json") << c.dump(2);
  auto adapter = PeftAdapter::open(dir.path());
  ASSERT_OK(adapter);
  EXPECT_EQ(adapter->find("model.language_model.layers.0.self_attn.q_proj.weight")->rank, 4);
  EXPECT_EQ(adapter->find("model.language_model.layers.0.self_attn.q_proj.weight")->scale, 16.0 / 4);
  EXPECT_EQ(adapter->find("model.language_model.layers.1.self_attn.q_proj.weight")->scale, 16.0 / 4);
  EXPECT_EQ(adapter->find("model.language_model.layers.1.self_attn.o_proj.weight")->scale, 3.0 / 8);

  c["use_rslora"] = true;
  c["rank_pattern"] = nlohmann::ordered_json::object();
  c["alpha_pattern"] = nlohmann::ordered_json::object();
  c["r"] = 4;
  testing::write_peft_adapter(dir.path(), nlohmann::json::parse(c.dump()),
                              {t(std::string(kVl) + "1.self_attn.q_proj.lora_A.weight", {4, 64}, 1),
                               t(std::string(kVl) + "1.self_attn.q_proj.lora_B.weight", {128, 4}, 2)});
  auto rs = PeftAdapter::open(dir.path());
  ASSERT_OK(rs);
  EXPECT_EQ(rs->deltas()[0].scale, 16.0 / std::sqrt(4.0));
}

// Each case: one change to a valid adapter, and a word the error must contain.
struct Refusal {
  const char* name;
  std::function<void(nlohmann::json&, std::vector<FloatTensor>&)> edit;
  const char* says;
};

TEST(PeftAdapter, RefusesWhatItCannotApplyExactlyNamingFileAndKey) {
  const std::vector<Refusal> cases = {
      {"dora", [](auto& c, auto&) { c["use_dora"] = true; }, "use_dora"},
      {"lora_bias", [](auto& c, auto&) { c["lora_bias"] = true; }, "lora_bias"},
      {"fan_in_fan_out", [](auto& c, auto&) { c["fan_in_fan_out"] = true; }, "fan_in_fan_out"},
      {"modules_to_save", [](auto& c, auto&) { c["modules_to_save"] = {"lm_head"}; }, "modules_to_save"},
      {"bias all", [](auto& c, auto&) { c["bias"] = "all"; }, "bias"},
      {"not LORA", [](auto& c, auto&) { c["peft_type"] = "IA3"; }, "peft_type"},
      {"dora key", [](auto&, auto& ts) { ts.push_back(t(std::string(kVl) + "0.self_attn.q_proj.lora_magnitude_vector", {128, 1}, 9)); },
       "lora_magnitude_vector"},
      {"bias key", [](auto&, auto& ts) { ts.push_back(t(std::string(kVl) + "0.self_attn.q_proj.lora_B.bias", {128, 1}, 9)); }, "lora_B.bias"},
      {"untargeted key", [](auto&, auto& ts) {
         ts.push_back(t(std::string(kVl) + "0.mlp.up_proj.lora_A.weight", {2, 64}, 9));
         ts.push_back(t(std::string(kVl) + "0.mlp.up_proj.lora_B.weight", {48, 2}, 9));
       }, "matches no target"},
      {"rank disagrees", [](auto&, auto& ts) { ts[0] = t(ts[0].name, {3, 64}, 1); }, "disagree with rank 2"},
      {"expert rows not E·r", [](auto&, auto& ts) { ts[4] = t(ts[4].name, {5, 16}, 1); }, "E·r"},
      {"missing partner", [](auto&, auto& ts) { ts.erase(ts.begin() + 1); }, "partner"},
      {"missing expert level", [](auto&, auto& ts) { ts.erase(ts.begin() + 2, ts.begin() + 4); }, "nesting levels"},
      {"3-D factor", [](auto&, auto& ts) { ts[0] = t(ts[0].name, {1, 2, 64}, 1); }, "not 2-D"},
  };
  for (const Refusal& rc : cases) {
    ScratchDir dir;
    nlohmann::json c = linear_and_experts_config();
    std::vector<FloatTensor> ts = linear_and_experts();
    rc.edit(c, ts);
    testing::write_peft_adapter(dir.path(), c, ts);
    auto adapter = PeftAdapter::open(dir.path());
    ASSERT_FALSE(adapter.ok()) << rc.name;
    EXPECT_NE(adapter.status().message().find(rc.says), std::string::npos) << rc.name << ": " << adapter.status().message();
    EXPECT_NE(adapter.status().message().find(dir.path().string()), std::string::npos) << rc.name << ": " << adapter.status().message();
  }
}

TEST(PeftAdapter, NonFiniteFactorIsRefusedNamingFileAndKey) {
  ScratchDir dir;
  std::vector<FloatTensor> ts = linear_and_experts();
  ts[1].values[7] = std::nanf("");
  testing::write_peft_adapter(dir.path(), linear_and_experts_config(), ts);
  auto adapter = PeftAdapter::open(dir.path());
  ASSERT_OK(adapter);
  const PeftDelta* q = adapter->find("model.language_model.layers.0.self_attn.q_proj.weight");
  auto f = adapter->factors(static_cast<size_t>(q - adapter->deltas().data()));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("adapter_model.safetensors: tensor '" + ts[1].name + "' holds 1 NaN"), std::string::npos)
      << f.status().message();
}

TEST(PeftPattern, PythonRegexFullMatchAsPeftUsesIt) {
  auto m = PyFullMatch::compile(".*language_model\\..*\\.(q_proj|v_proj)", "test");
  ASSERT_OK(m);
  EXPECT_TRUE(m->matches("model.language_model.layers.3.self_attn.q_proj"));
  EXPECT_FALSE(m->matches("model.language_model.layers.3.self_attn.q_proj.linear"));  // fullmatch, not search
  EXPECT_FALSE(m->matches("model.vision_tower.encoder.layers.0.self_attn.q_proj"));
  auto d = PyFullMatch::compile("(?:.*\\.)?layers\\.\\d+\\.mlp\\.(gate|up)_proj", "test");
  ASSERT_OK(d);
  EXPECT_TRUE(d->matches("model.layers.12.mlp.up_proj"));
  EXPECT_FALSE(d->matches("model.layers.x.mlp.up_proj"));
  EXPECT_FALSE(PyFullMatch::compile("(?!vision).*q_proj", "test").ok());  // a look-ahead is refused, not guessed
  EXPECT_TRUE(suffix_matches("a.b.q_proj", "q_proj"));
  EXPECT_FALSE(suffix_matches("a.b.xq_proj", "q_proj"));
}

}  // namespace
}  // namespace g4::lora
