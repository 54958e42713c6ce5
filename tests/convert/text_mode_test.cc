// Megatron-Bridge's text mode (issue 10, GEMMA4_CONVERSION_MODE=text): a conditional model stored as a plain
// GPTModel, with no "language_model." prefix and no towers. Every reader detects the prefix from the checkpoint;
// mcore2hf writes the conditional form back with the towers taken from --reference-hf byte for byte, and names
// the tower nobody has; hf2mcore --text-mode writes that layout; a causal config over a VL checkpoint exports the
// causal form with a warning.
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "convert/hf2mcore.h"
#include "convert/mcore2hf.h"
#include "convert/mcore_keys.h"
#include "convert/roundtrip.h"
#include "inspect/hf_inspect.h"
#include "mcore_edit.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

Result<ConvertSummary> to_mcore(const fs::path& hf, const fs::path& out, bool text_mode) {
  Hf2McoreOptions o;
  o.hf = hf;
  o.out = out;
  o.text_mode = text_mode;
  return hf2mcore(o);
}

Result<ConvertSummary> to_hf(const fs::path& mcore, const fs::path& out, std::optional<fs::path> reference) {
  Mcore2HfOptions o;
  o.mcore = mcore;
  o.out = out;
  o.reference_hf = reference;
  return mcore2hf(o);
}

bool is_tower_key(const std::string& key) {
  for (const char* p : {"vision_tower.", "embed_vision.", "audio_tower.", "embed_audio."})
    if (key.starts_with(p)) return true;
  return false;
}

// What Megatron-Bridge's text mode stores, made from our VL layout independently of hf2mcore --text-mode: every
// key without "language_model.", the towers gone, no hf_config.json (MB writes none).
fs::path megatron_bridge_text_mode(const std::string& name, const fs::path& out) {
  EXPECT_OK(to_mcore(tiny(name), out, false));
  testing::rename_mcore_keys(out, [](const std::string& key) -> std::string {
    if (is_tower_key(key)) return "";
    return key.starts_with("language_model.") ? key.substr(15) : key;
  });
  fs::remove(out / "iter_0000000" / kHfConfigFile);
  return out;
}

void expect_identical(const fs::path& original, const fs::path& converted) {
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(original, converted, report));
  EXPECT_GT(report.tensors_compared, 100u);
  EXPECT_TRUE(report.identical()) << (report.tensor_differences.empty() ? report.config_differences[0].item
                                                                        : report.tensor_differences[0].item + ": " +
                                                                              report.tensor_differences[0].roundtripped);
}

TEST(TextMode, AMegatronBridgeTextModeCheckpointExportsTheConditionalFormIdenticalToTheOriginalWithTowersFromTheReference) {
  for (const char* name : {"tiny-e4b-vla", "tiny-26b-a4b-vl"}) {
    SCOPED_TRACE(name);
    ScratchDir dir;
    const fs::path m = megatron_bridge_text_mode(name, dir / "m");
    auto summary = to_hf(m, dir / "hf", tiny(name));
    ASSERT_OK(summary);
    EXPECT_EQ(summary->form, "conditional");
    ASSERT_EQ(summary->warnings.size(), 1u);
    EXPECT_NE(summary->warnings[0].find("were taken from " + tiny(name).string() + " byte for byte"), std::string::npos) << summary->warnings[0];
    expect_identical(tiny(name), dir / "hf");
    // The other readers take the prefix from the checkpoint too.
    const std::string config = tiny(name).string() + "/config.json";
    auto r = inspect_mcore(m, {false, nullptr}, config);
    ASSERT_OK(r);
    EXPECT_TRUE(r->problems.empty()) << r->problems[0].message;
    std::string out;
    EXPECT_EQ(testing::run_g4convert("verify --hf " + tiny(name).string() + " --mcore " + m.string() + " --config " + config, &out), 0) << out;
  }
}

// As Megatron-Bridge writes it: no hf_config.json, a run_config.yaml whose model is the text provider (a causal
// description), which the conditional reference must not be taken to contradict.
TEST(TextMode, ATextModeCheckpointDescribedOnlyByItsTextProviderRunConfigExportsTheConditionalFormOfTheReference) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-e4b-vla"), dir / "m", true));
  fs::remove(dir / "m" / "iter_0000000" / kHfConfigFile);
  auto summary = to_hf(dir / "m", dir / "hf", tiny("tiny-e4b-vla"));
  ASSERT_OK(summary);
  EXPECT_EQ(summary->form, "conditional");
  expect_identical(tiny("tiny-e4b-vla"), dir / "hf");
  // Without the reference the run config's own (causal) description is what there is.
  auto causal = to_hf(dir / "m", dir / "hf-causal", std::nullopt);
  ASSERT_OK(causal);
  EXPECT_EQ(causal->form, "causal");
}

TEST(TextMode, ATextModeCheckpointWhoseConfigDeclaresTowersNobodyHasIsAnErrorNamingTheTower) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-e4b-vla"), dir / "m", true));  // hf_config.json: the conditional config, towers declared
  std::string out;
  EXPECT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "hf").string(), &out), 2) << out;
  EXPECT_NE(out.find("the config declares a vision tower (vision_config) but the checkpoint has no vision_tower.* tensors"),
            std::string::npos) << out;
  EXPECT_NE(out.find("pass --reference-hf DIR"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(fs::exists(dir / "hf"));
}

TEST(TextMode, Hf2mcoreTextModeWritesTheVlKeysWithoutPrefixNoTowersAndTheTextProviderAndReportsTheTowers) {
  for (const char* name : {"tiny-e4b-vla", "tiny-26b-a4b-vl"}) {
    SCOPED_TRACE(name);
    ScratchDir dir;
    ASSERT_OK(to_mcore(tiny(name), dir / "vl", false));
    auto summary = to_mcore(tiny(name), dir / "text", true);
    ASSERT_OK(summary);
    ASSERT_EQ(summary->warnings.size(), 1u);
    EXPECT_NE(summary->warnings[0].find("--text-mode: the "), std::string::npos) << summary->warnings[0];
    EXPECT_NE(summary->warnings[0].find("vision/audio tower tensors were not written"), std::string::npos) << summary->warnings[0];
    auto vl = dcp::Checkpoint::open(dir / "vl");
    auto text = dcp::Checkpoint::open(dir / "text");
    ASSERT_OK(vl);
    ASSERT_OK(text);
    // Exactly the VL checkpoint's language-model tensors and objects, the prefix removed, bytes identical.
    std::set<std::string> expected, got;
    for (const auto& [key, e] : (*vl)->metadata().tensors)
      if (!is_tower_key(key) && !dcp::is_training_state_key(key)) expected.insert(key.substr(15));
    for (const auto& [key, e] : (*text)->metadata().tensors)
      if (!dcp::is_training_state_key(key)) got.insert(key);
    EXPECT_EQ(got, expected);
    for (const std::string& key : got)
      EXPECT_EQ(testing::read_mcore_tensor(dir / "text", key), testing::read_mcore_tensor(dir / "vl", "language_model." + key)) << key;
    std::set<std::string> vl_objects, text_objects;
    for (const auto& [key, w] : (*vl)->metadata().byte_items)
      if (key.starts_with("language_model.")) vl_objects.insert(key.substr(15));
    for (const auto& [key, w] : (*text)->metadata().byte_items)
      if (key.find("_extra_state") != std::string::npos) text_objects.insert(key);
    EXPECT_EQ(text_objects, vl_objects);
    EXPECT_EQ(convert::language_prefix(**text), std::optional<std::string>(""));
    const std::string yaml = testing::read_bytes(dir / "text" / "iter_0000000" / "run_config.yaml");
    const bool moe = std::string(name) == "tiny-26b-a4b-vl";
    EXPECT_NE(yaml.find(moe ? "gemma4_provider.Gemma4ModelProvider" : "gemma4_provider.Gemma4DenseProvider"), std::string::npos);
    EXPECT_EQ(yaml.find("gemma_vl"), std::string::npos);
  }
}

TEST(TextMode, RoundtripInTextModeIsBitExactOnTheTextTensorsAndTheTowersComeBackFromTheOriginal) {
  for (const char* name : {"tiny-e4b-vla", "tiny-26b-a4b-vl", "tiny-e2b"}) {  // tiny-e2b: causal, text mode is a no-op
    SCOPED_TRACE(name);
    std::string out;
    EXPECT_EQ(testing::run_g4convert("roundtrip --text-mode --hf " + tiny(name).string(), &out), 0) << out;
  }
  RoundtripOptions o;
  o.hf = tiny("tiny-e4b-vla");
  o.text_mode = true;
  auto report = roundtrip(o);
  ASSERT_OK(report);
  EXPECT_TRUE(report->identical());
  EXPECT_GT(report->tensors_compared, 200u);
}

// The text config of a conditional config.json as a Gemma4ForCausalLM config.
void write_causal_config(const fs::path& conditional, const fs::path& to) {
  std::ifstream in(conditional);
  nlohmann::json j = nlohmann::json::parse(in), text = j["text_config"];
  text["architectures"] = {"Gemma4ForCausalLM"};
  text["model_type"] = "gemma4_text";
  testing::write_bytes(to, text.dump(2));
}

TEST(TextMode, ACausalConfigOverAVlCheckpointExportsItsLanguageModelAsTheCausalFormWithAWarningCountingTheTowers) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-e4b-vla"), dir / "m", false));
  write_causal_config(tiny("tiny-e4b-vla") / "config.json", dir / "m" / "iter_0000000" / kHfConfigFile);
  auto summary = to_hf(dir / "m", dir / "hf", std::nullopt);
  ASSERT_OK(summary);
  EXPECT_EQ(summary->form, "causal");
  ASSERT_EQ(summary->warnings.size(), 1u);
  EXPECT_NE(summary->warnings[0].find("the checkpoint is a VL model (keys under 'language_model.') and the config is causal"),
            std::string::npos) << summary->warnings[0];
  EXPECT_NE(summary->warnings[0].find("its 114 tower tensors were not exported"), std::string::npos) << summary->warnings[0];
  auto original = SafetensorsSet::open_dir(tiny("tiny-e4b-vla"));
  auto causal = SafetensorsSet::open_dir(dir / "hf");
  ASSERT_OK(original);
  ASSERT_OK(causal);
  size_t text = 0;
  for (const auto& [name, e] : original->tensors()) {
    if (!name.starts_with("model.language_model.")) continue;
    ++text;
    const SafetensorsSet::Entry* c = causal->find("model." + name.substr(21));
    ASSERT_TRUE(c) << name;
    const auto a = original->data(e), b = causal->data(*c);
    EXPECT_TRUE(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0) << name;
  }
  EXPECT_EQ(causal->tensors().size(), text);
}

}  // namespace
}  // namespace g4::convert
