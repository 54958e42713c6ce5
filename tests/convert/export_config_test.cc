// mcore2hf on a checkpoint with no hf_config.json (Megatron-Bridge writes none): the HF config is rebuilt from
// run_config.yaml (the provider `_target_` and its fields) plus the tensor shapes, reproduces every tiny
// checkpoint's architecture and tensors exactly, names what it cannot recover, and is checked against
// --config / --reference-hf (the first disagreeing field named).
#include <fstream>

#include <gtest/gtest.h>

#include "convert/export_config.h"
#include "convert/mcore2hf.h"
#include "convert/provider_config.h"
#include "convert/roundtrip.h"
#include "gemma4/synth.h"
#include "runtime/yaml_reader.h"
#include "test_support.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

// hf2mcore of a tiny checkpoint with hf_config.json removed, as Megatron-Bridge leaves it; returns the iteration dir.
fs::path megatron_without_hf_config(const std::string& name, const fs::path& out) {
  Hf2McoreOptions o;
  o.hf = tiny(name);
  o.out = out;
  o.threads = 2;
  auto s = hf2mcore(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  const fs::path iter = out / "iter_0000000";
  fs::remove(iter / kHfConfigFile);
  return iter;
}

Result<ConvertSummary> export_hf(const fs::path& mcore, const fs::path& out, std::optional<fs::path> config = std::nullopt) {
  Mcore2HfOptions o;
  o.mcore = mcore;
  o.out = out;
  o.threads = 2;
  o.config_file = config;
  return mcore2hf(o);
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

constexpr const char* kTowerTokenIds[] = {"boi_token_id", "eoi_token_id", "boa_token_id", "eoa_token_index"};

TEST(Mcore2hfWithoutHfConfig, EveryTinyCheckpointComesBackWithItsArchitectureAndEveryTensorByteForByte) {
  for (const char* name : {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b", "tiny-e4b-vla", "tiny-26b-a4b-vl"}) {
    ScratchDir dir;
    megatron_without_hf_config(name, dir.path() / "m");
    auto summary = export_hf(dir.path() / "m", dir.path() / "hf");
    ASSERT_TRUE(summary.ok()) << name << ": " << summary.status().to_string();
    RoundtripReport report;
    ASSERT_OK(compare_hf_checkpoints(tiny(name), dir.path() / "hf", report));
    EXPECT_TRUE(report.tensor_differences.empty()) << name << ": " << report.tensor_differences[0].item;
    EXPECT_GT(report.tensors_compared, 50u);
    // Only the fields the provider does not record may differ, and each is named in a warning.
    for (const Difference& d : report.config_differences) {
      EXPECT_TRUE(std::find(std::begin(kTowerTokenIds), std::end(kTowerTokenIds), d.item) != std::end(kTowerTokenIds))
          << name << ": " << d.item << ": " << d.original << " vs " << d.roundtripped;
      EXPECT_NE(joined(summary->warnings).find(d.item), std::string::npos) << name << ": " << d.item << " not named";
    }
    auto a = gemma4::load_config((tiny(name) / "config.json").string());
    auto b = gemma4::load_config((dir.path() / "hf" / "config.json").string());
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(first_architecture_difference(*a, *b), "") << name;
  }
}

TEST(Mcore2hfWithoutHfConfig, FieldsTheProviderCannotHoldAreNamedAndTakenFromConfigWhenGiven) {
  ScratchDir dir;
  megatron_without_hf_config("tiny-e4b-vla", dir.path() / "m");
  auto without = export_hf(dir.path() / "m", dir.path() / "a");
  ASSERT_OK(without);
  const std::string w = joined(without->warnings);
  for (const char* field : kTowerTokenIds) EXPECT_NE(w.find(field), std::string::npos) << field << " not named in: " << w;
  EXPECT_NE(w.find("pass --config or --reference-hf"), std::string::npos) << w;

  auto with = export_hf(dir.path() / "m", dir.path() / "b", tiny("tiny-e4b-vla") / "config.json");
  ASSERT_OK(with);
  EXPECT_EQ(joined(with->warnings).find("boi_token_id"), std::string::npos);
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(tiny("tiny-e4b-vla"), dir.path() / "b", report));
  EXPECT_TRUE(report.config_differences.empty()) << report.config_differences[0].item;
}

// A causal text checkpoint's run_config.yaml records neither use_bidirectional_attention nor (MoE) the inert
// vocab_size_per_layer_input; its own source config, given as the reference, must not be refused over them.
TEST(Mcore2hfWithoutHfConfig, TheSourceConfigAgreesOnEverythingRunConfigRecords) {
  ScratchDir dir;
  gemma4::SynthOptions synth;
  synth.preset = "tiny-26b-a4b";
  synth.out = dir.path() / "causal";
  ASSERT_OK(gemma4::synth_checkpoint(synth));
  json text = json::parse(testing::read_bytes(dir.path() / "causal" / "config.json"));
  text["use_bidirectional_attention"] = "vision";
  text["vocab_size_per_layer_input"] = 262143;
  testing::write_bytes(dir.path() / "causal" / "config.json", text.dump(2));
  Hf2McoreOptions o;
  o.hf = dir.path() / "causal";
  o.out = dir.path() / "m";
  ASSERT_OK(hf2mcore(o));
  fs::remove(dir.path() / "m" / "iter_0000000" / kHfConfigFile);
  auto r = export_hf(dir.path() / "m", dir.path() / "hf", dir.path() / "causal" / "config.json");
  ASSERT_OK(r);
  auto back = gemma4::load_config((dir.path() / "hf" / "config.json").string());
  ASSERT_OK(back);
  EXPECT_EQ(back->text.vocab_size_per_layer_input, 262143) << "the given config's value";
}

TEST(Mcore2hfWithoutHfConfig, AConfigThatDisagreesWithRunConfigIsRefusedNamingTheFieldAndBothValues) {
  ScratchDir dir;
  megatron_without_hf_config("tiny-e4b", dir.path() / "m");
  json cfg = json::parse(testing::read_bytes(tiny("tiny-e4b") / "config.json"));
  cfg["text_config"]["sliding_window"] = 8;
  testing::write_bytes(dir.path() / "config.json", cfg.dump(2));
  auto r = export_hf(dir.path() / "m", dir.path() / "hf", dir.path() / "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kMismatch);
  EXPECT_NE(r.status().message().find("disagree on text_config.sliding_window: 8 vs 4"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("run_config.yaml"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir.path() / "hf"));
}

TEST(Mcore2hfWithoutHfConfig, ProviderFieldsTheFileLeavesOutComeFromTheTensorShapesAndAreNamed) {
  ScratchDir dir;
  const fs::path iter = megatron_without_hf_config("tiny-26b-a4b", dir.path() / "m");
  std::string yaml = testing::read_bytes(iter / kRunConfigFile);
  // Drop each field's line of the model section (no std::regex: GCC 12's -O1 sanitized build warns inside it).
  for (const std::string field : {"num_layers", "hidden_size", "num_moe_experts", "moe_ffn_hidden_size"}) {
    const size_t at = yaml.find("\n  " + field + ": ");
    ASSERT_NE(at, std::string::npos) << field;
    yaml.erase(at, yaml.find('\n', at + 1) - at);
  }
  testing::write_bytes(iter / kRunConfigFile, yaml);
  auto summary = export_hf(dir.path() / "m", dir.path() / "hf");
  ASSERT_OK(summary);
  EXPECT_NE(joined(summary->warnings).find("does not state num_layers, hidden_size, num_moe_experts, moe_ffn_hidden_size; taken from the tensor shapes"),
            std::string::npos)
      << joined(summary->warnings);
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(tiny("tiny-26b-a4b"), dir.path() / "hf", report));
  EXPECT_TRUE(report.tensor_differences.empty());
}

// An adapter checkpoint saved apart from its base has a run_config.yaml with no model section: it describes no
// model, so --config decides, and without one the error asks for it.
TEST(Mcore2hfWithoutHfConfig, ARunConfigWithoutAModelSectionDefersToTheGivenConfig) {
  ScratchDir dir;
  const fs::path iter = megatron_without_hf_config("tiny-31b", dir.path() / "m");
  testing::write_bytes(iter / kRunConfigFile, "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n");
  auto without = export_hf(dir.path() / "m", dir.path() / "a");
  ASSERT_FALSE(without.ok());
  EXPECT_NE(without.status().message().find("--config"), std::string::npos) << without.status().message();
  ASSERT_OK(export_hf(dir.path() / "m", dir.path() / "b", tiny("tiny-31b") / "config.json"));
}

TEST(Mcore2hfWithoutHfConfig, ACheckpointWithNeitherFileNamesBothAndTheFlag) {
  ScratchDir dir;
  const fs::path iter = megatron_without_hf_config("tiny-31b", dir.path() / "m");
  fs::remove(iter / kRunConfigFile);
  auto r = export_hf(dir.path() / "m", dir.path() / "hf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no hf_config.json or run_config.yaml"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("--config"), std::string::npos);
}

TEST(Mcore2hfWithoutHfConfig, ABrokenRunConfigIsAOneLineErrorNamingTheFileAndLine) {
  ScratchDir dir;
  const fs::path iter = megatron_without_hf_config("tiny-31b", dir.path() / "m");
  testing::write_bytes(iter / kRunConfigFile, "model:\n  _target_: x.Gemma4DenseProvider\n  num_layers: [1, 2\n");
  auto r = export_hf(dir.path() / "m", dir.path() / "hf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("run_config.yaml:"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  testing::write_bytes(iter / kRunConfigFile, "model:\n  _target_: megatron.bridge.models.llama.LlamaProvider\n");
  r = export_hf(dir.path() / "m", dir.path() / "hf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'megatron.bridge.models.llama.LlamaProvider' is not a Gemma 4 provider"), std::string::npos)
      << r.status().message();
}

// The provider as Megatron-Bridge 0.6.2 serialises it (its field names and values, not our writer's).
const dcp::Metadata kNoTensors;

TEST(ProviderConfig, MegatronBridgeDenseFieldsBecomeTheHfConfig) {
  const json run_config = {{"model",
                            {{"_target_", "megatron.bridge.models.gemma.gemma4_provider.Gemma4DenseProvider"},
                             {"num_layers", 6}, {"hidden_size", 64}, {"ffn_hidden_size", 48}, {"num_attention_heads", 4},
                             {"num_query_groups", 1}, {"kv_channels", 32}, {"global_kv_channels", 64}, {"num_global_query_groups", nullptr},
                             {"vocab_size", 128}, {"seq_length", 131072}, {"layernorm_epsilon", 1e-6}, {"window_size", {3, 0}},
                             {"window_attn_skip_freq", {true, false, true, true, true, false}}, {"sliding_window_rope_base", 10000.0},
                             {"full_attention_rope_base", 1000000.0}, {"full_attention_rope_partial_factor", 0.25},
                             {"num_kv_shared_layers", 3}, {"use_double_wide_mlp", true}, {"per_layer_embed_vocab_size", 128},
                             {"per_layer_embed_dim", 16}, {"final_logit_softcapping", 30.0}, {"qk_layernorm", false},
                             {"softmax_scale", nullptr}, {"bf16", true},
                             {"activation_func", {{"_target_", "megatron.core.activations.fast_gelu"}, {"_call_", false}}}}}};
  auto r = hf_config_from_run_config(run_config, "run_config.yaml", kNoTensors);
  ASSERT_OK(r);
  const json& hf = r->hf;
  EXPECT_EQ(hf["sliding_window"], 4) << "MCore's (w-1, 0) window";
  EXPECT_EQ(hf["layer_types"][1], "full_attention");
  EXPECT_EQ(hf["layer_types"][0], "sliding_attention");
  EXPECT_TRUE(hf["num_global_key_value_heads"].is_null());
  EXPECT_EQ(hf["global_head_dim"], 64);
  EXPECT_EQ(hf["hidden_activation"], "gelu_pytorch_tanh");
  EXPECT_EQ(hf["dtype"], "bfloat16");
  EXPECT_EQ(hf["architectures"][0], "Gemma4ForCausalLM");
  EXPECT_OK(gemma4::parse_config_json(hf, "rebuilt"));
  EXPECT_EQ(r->unrecoverable, (std::vector<std::string>{"pad_token_id", "eos_token_id", "bos_token_id", "use_bidirectional_attention"}));
}

TEST(ProviderConfig, MegatronBridgeMoeVlFieldsAndItsHfConfigNodeFormBecomeTheHfConfig) {
  const json run_config = {{"model",
                            {{"_target_", "megatron.bridge.models.gemma_vl.gemma4_vl_provider.Gemma4VLModelProvider"},
                             {"num_layers", 6}, {"hidden_size", 64}, {"num_attention_heads", 4}, {"num_query_groups", 2},
                             {"kv_channels", 32}, {"vocab_size", 128}, {"window_size", 4}, {"interleaved_attn_pattern", {5, 1}},
                             {"rotary_base", {10000, 1000000}}, {"global_head_dim", 64}, {"num_global_key_value_heads", 1},
                             {"attention_k_eq_v", true}, {"global_rotary_percent", 0.25}, {"num_moe_experts", 4}, {"moe_router_topk", 2},
                             {"moe_ffn_hidden_size", 16}, {"moe_shared_expert_intermediate_size", 48},
                             {"image_token_id", 4}, {"video_token_id", 7}, {"audio_token_id", 8},
                             // MB 0.6.2: a PreTrainedConfig as its class and fields (no from_dict, no config_dict).
                             {"text_config", {{"_target_", "transformers.models.gemma4.configuration_gemma4.Gemma4TextConfig"},
                                              {"pad_token_id", 0}, {"bos_token_id", 2}, {"eos_token_id", 1},
                                              {"use_bidirectional_attention", "vision"}, {"vocab_size_per_layer_input", 96}}},
                             {"vision_config", {{"_target_", "transformers.models.gemma4.configuration_gemma4.Gemma4VisionConfig"},
                                                {"hidden_size", 32}}},
                             {"audio_config", nullptr}}}};
  auto r = hf_config_from_run_config(run_config, "run_config.yaml", kNoTensors);
  ASSERT_OK(r);
  const json& hf = r->hf;
  EXPECT_EQ(hf["architectures"][0], "Gemma4ForConditionalGeneration");
  EXPECT_EQ(hf["text_config"]["layer_types"].size(), 6u);
  EXPECT_EQ(hf["text_config"]["layer_types"][4], "sliding_attention");
  EXPECT_EQ(hf["text_config"]["layer_types"][5], "full_attention");
  EXPECT_EQ(hf["text_config"]["sliding_window"], 4);
  EXPECT_EQ(hf["text_config"]["use_bidirectional_attention"], "vision");
  EXPECT_EQ(hf["text_config"]["num_experts"], 4);
  EXPECT_EQ(hf["text_config"]["intermediate_size"], 48) << "the shared expert's width";
  EXPECT_EQ(hf["vision_config"], (json{{"hidden_size", 32}}));
  EXPECT_TRUE(hf["audio_config"].is_null());
  EXPECT_EQ(hf["image_token_id"], 4);
  EXPECT_EQ(hf["text_config"]["vocab_size_per_layer_input"], 96) << "no MoE provider field: the text_config node's";
  EXPECT_EQ(r->unrecoverable, (std::vector<std::string>(std::begin(kTowerTokenIds), std::end(kTowerTokenIds))));
}

TEST(ProviderConfig, ALiteralLayerTypeListAndAnEveryNthPatternAreReadLikeMegatronBridge) {
  json m = {{"_target_", "Gemma4ModelProvider"}, {"num_layers", 4},
            {"interleaved_attn_pattern", {"sliding_attention", "full_attention", "full_attention", "full_attention"}}};
  auto r = hf_config_from_run_config({{"model", m}}, "f.yaml", kNoTensors);
  ASSERT_OK(r);
  EXPECT_EQ(r->hf["layer_types"], json({"sliding_attention", "full_attention", "full_attention", "full_attention"}));
  m["interleaved_attn_pattern"] = 2;
  r = hf_config_from_run_config({{"model", m}}, "f.yaml", kNoTensors);
  ASSERT_OK(r);
  EXPECT_EQ(r->hf["layer_types"], json({"sliding_attention", "full_attention", "sliding_attention", "full_attention"}));
  m["interleaved_attn_pattern"] = {1, 2, 3};
  r = hf_config_from_run_config({{"model", m}}, "f.yaml", kNoTensors);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "f.yaml: model.interleaved_attn_pattern: has 3 entries for 4 layers");
}

TEST(RunConfigYaml, OurRunConfigReadsBackWithOurYamlReaderAsThePyYamlTypesItStates) {
  auto cfg = gemma4::load_config((tiny("tiny-e2b") / "config.json").string());
  ASSERT_OK(cfg);
  auto parsed = parse_yaml(run_config_yaml(*cfg, DType::kF32), "run_config.yaml");
  ASSERT_OK(parsed);
  const json& m = (*parsed)["model"];
  EXPECT_EQ(m["_target_"], "megatron.bridge.models.gemma.gemma4_provider.Gemma4DenseProvider");
  EXPECT_TRUE(m["layernorm_epsilon"].is_number_float());
  EXPECT_EQ(m["window_size"], json({3, 0}));
  EXPECT_EQ(m["qk_layernorm"], false) << "MB 0.6.2's dense provider leaves TransformerConfig's default";
  EXPECT_TRUE(m["softmax_scale"].is_null());
  EXPECT_EQ(m["params_dtype"]["_target_"], "torch.float32");
  EXPECT_GT(m.size(), 250u) << "every provider field, as MB writes its whole config";
}

}  // namespace
}  // namespace g4::convert
