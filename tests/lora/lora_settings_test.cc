// The peft: section of run_config.yaml as Megatron-Bridge serialises its LoRA dataclass, and MB's module matching.
#include "lora/lora_settings.h"

#include <fstream>

#include <gtest/gtest.h>

#include "test_support.h"

namespace g4::lora {
namespace {

namespace fs = std::filesystem;

fs::path write_run_config(const fs::path& dir, const std::string& yaml) {
  fs::create_directories(dir);
  std::ofstream(dir / "run_config.yaml") << yaml;
  return dir;
}

constexpr const char* kLoraSection = R"(model:
  _target_: megatron.bridge.models.gemma.gemma4_provider.Gemma4ModelProvider
checkpoint:
  pretrained_checkpoint: /ckpt/base
peft:
  _target_: megatron.bridge.peft.lora.LoRA
  target_modules:
  - linear_qkv
  - linear_fc1
  exclude_modules: []
  canonical_mapping: {}
  dim: 8
  alpha: 16
  dropout: 0.0
  dropout_position: pre
  lora_A_init_method: xavier
  lora_B_init_method: zero
  lora_dtype: null
  normalize_moe_lora: true
  share_expert_adapters: false
  experts_shared_outer_loras: false
)";

TEST(LoraSettings, ReadsEveryFieldOfMegatronBridgesLoraSection) {
  testing::ScratchDir tmp;
  const fs::path iter = write_run_config(tmp.path() / "iter_0000010", kLoraSection);
  auto s = read_lora_settings(iter, {});
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->target_class, "megatron.bridge.peft.lora.LoRA");
  EXPECT_EQ(s->dim, 8);
  EXPECT_EQ(s->alpha, 16);
  EXPECT_EQ(s->target_modules, (std::vector<std::string>{"linear_qkv", "linear_fc1"}));
  EXPECT_TRUE(s->normalize_moe_lora);
  EXPECT_FALSE(s->share_expert_adapters);
  ASSERT_TRUE(s->pretrained_checkpoint.has_value());
  EXPECT_EQ(*s->pretrained_checkpoint, fs::path("/ckpt/base"));
  EXPECT_EQ(s->source, iter / "run_config.yaml");
}

TEST(LoraSettings, RankFromTheCommandLineOnlyWithoutASection) {
  testing::ScratchDir tmp;
  const fs::path with = write_run_config(tmp.path() / "with", kLoraSection);
  EXPECT_TRUE(read_lora_settings(with, {.rank = 8}).ok());
  auto clash = read_lora_settings(with, {.rank = 4});
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("peft.dim 8"), std::string::npos) << clash.status().message();

  const fs::path without = write_run_config(tmp.path() / "without", "model: {}\n");
  auto none = read_lora_settings(without, {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--rank"), std::string::npos);
  auto cli = read_lora_settings(without, {.rank = 4});
  ASSERT_TRUE(cli.ok());
  EXPECT_EQ(cli->dim, 4);
  EXPECT_EQ(cli->alpha, 4);  // MB's alpha defaults to the rank's default; ours to the given rank
  EXPECT_TRUE(cli->source.empty());
}

TEST(LoraSettings, RefusesMethodsPeftCannotExpress) {
  testing::ScratchDir tmp;
  auto with_target = [&](const std::string& name, const std::string& target, const std::string& extra = "") {
    return read_lora_settings(write_run_config(tmp.path() / name, "peft:\n  _target_: " + target + "\n" + extra), {});
  };
  auto dora = with_target("dora", "megatron.bridge.peft.dora.DoRA");
  ASSERT_FALSE(dora.ok());
  EXPECT_NE(dora.status().message().find("DoRA"), std::string::npos);
  auto canonical = with_target("canonical", "megatron.bridge.peft.canonical_lora.CanonicalLoRA");
  ASSERT_FALSE(canonical.ok());
  EXPECT_NE(canonical.status().message().find("canonical"), std::string::npos);
  EXPECT_FALSE(with_target("other", "some.module.Thing").ok());
  auto outer = with_target("outer", "megatron.bridge.peft.lora.LoRA", "  experts_shared_outer_loras: true\n");
  ASSERT_FALSE(outer.ok());
  EXPECT_NE(outer.status().message().find("shared-outer"), std::string::npos);
  EXPECT_TRUE(with_target("vlm", "megatron.bridge.peft.lora.VLMLoRA").ok());
}

TEST(LoraSettings, WrongTypesNameTheFieldAndFile) {
  testing::ScratchDir tmp;
  auto s = read_lora_settings(write_run_config(tmp.path() / "x", "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: '8'\n"), {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("peft.dim"), std::string::npos);
  EXPECT_NE(s.status().message().find("run_config.yaml"), std::string::npos);
  EXPECT_FALSE(read_lora_settings(write_run_config(tmp.path() / "y", "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  dim: 0\n"), {}).ok());
  EXPECT_FALSE(
      read_lora_settings(write_run_config(tmp.path() / "z", "peft:\n  _target_: megatron.bridge.peft.lora.LoRA\n  target_modules: ['[']\n"), {})
          .ok());
}

TEST(LoraSettings, MatchesModulesAsMegatronBridgesModuleMatcher) {
  LoraSettings s;
  s.target_modules = {"linear_qkv", "*.layers.1.*.linear_fc1"};
  EXPECT_TRUE(is_target_module(s, "decoder.layers.0.self_attention.linear_qkv"));
  EXPECT_TRUE(is_target_module(s, "language_model.decoder.layers.3.self_attention.linear_qkv"));
  EXPECT_TRUE(is_target_module(s, "decoder.layers.1.mlp.linear_fc1"));
  EXPECT_FALSE(is_target_module(s, "decoder.layers.2.mlp.linear_fc1"));
  EXPECT_FALSE(is_target_module(s, "decoder.layers.0.self_attention.linear_proj"));
  // A leaf name matches only the whole leaf.
  EXPECT_FALSE(is_target_module(s, "decoder.layers.0.self_attention.linear_qkv_extra"));
  LoraSettings all;
  all.target_modules.clear();
  all.exclude_modules = {"linear_proj"};
  EXPECT_TRUE(is_target_module(all, "decoder.layers.0.mlp.linear_fc2"));
  EXPECT_FALSE(is_target_module(all, "decoder.layers.0.self_attention.linear_proj"));
}

}  // namespace
}  // namespace g4::lora
