// hf2mcore / mcore2hf / roundtrip end to end on the bundled tiny checkpoints, and their refusals of bad input:
// one clear error naming the file and tensor, and no output directory left that looks complete.
#include <cmath>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "checkpoint_edit.h"
#include "convert/mcore2hf.h"
#include "convert/mcore_files.h"
#include "convert/roundtrip.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::convert {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

Result<ConvertSummary> to_mcore(const fs::path& hf, const fs::path& out) {
  Hf2McoreOptions o;
  o.hf = hf;
  o.out = out;
  o.threads = 2;
  return hf2mcore(o);
}

Result<ConvertSummary> to_hf(const fs::path& mcore, const fs::path& out) {
  Mcore2HfOptions o;
  o.mcore = mcore;
  o.out = out;
  o.threads = 2;
  return mcore2hf(o);
}

TEST(Roundtrip, EveryBundledTinyCheckpointComesBackBitExact) {
  for (const char* name : {"tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"}) {
    RoundtripOptions o;
    o.hf = tiny(name);
    o.threads = 2;
    auto report = roundtrip(o);
    ASSERT_TRUE(report.ok()) << name << ": " << report.status().to_string();
    EXPECT_TRUE(report->identical()) << name << ": " << (report->tensor_differences.empty() ? "" : report->tensor_differences[0].item);
    EXPECT_GT(report->tensors_compared, 90u);
    EXPECT_TRUE(report->warnings.empty()) << report->warnings[0];
  }
}

// Towers as the released E2B/E4B vision and every audio tower have them: clipped linears with 0-d clip bounds
// (input_min/input_max/output_min/output_max), passed through under their HF names minus "model.".
TEST(Roundtrip, BundledTowerCheckpointsWithClippedLinearsComeBackBitExactIncludingTheirScalarClipBounds) {
  for (const char* name : {"tiny-e4b-vla", "tiny-26b-a4b-vl"}) {
    auto original = SafetensorsSet::open_dir(tiny(name));
    ASSERT_OK(original);
    size_t scalars = 0;
    for (const auto& [key, entry] : original->tensors()) scalars += entry.info->shape.empty();
    EXPECT_GE(scalars, 4u * 7u) << name << ": every clipped linear of the vision tower has four 0-d bounds";
    RoundtripOptions o;
    o.hf = tiny(name);
    o.threads = 2;
    auto report = roundtrip(o);
    ASSERT_TRUE(report.ok()) << name << ": " << report.status().to_string();
    EXPECT_TRUE(report->identical()) << name << ": " << (report->tensor_differences.empty() ? "" : report->tensor_differences[0].item);
    EXPECT_EQ(report->tensors_compared, original->tensors().size()) << name;
    EXPECT_TRUE(report->warnings.empty()) << report->warnings[0];
  }
}

TEST(Roundtrip, ComparisonReportsAChangedTensorAndAChangedConfigField) {
  ScratchDir dir;
  testing::copy_checkpoint(tiny("tiny-31b"), dir / "a", [](testing::Tensor&) { return true; });
  testing::copy_checkpoint(tiny("tiny-31b"), dir / "b", [](testing::Tensor& t) {
    if (t.spec.name == "model.language_model.layers.1.layer_scalar") t.bytes[0] ^= 1;
    return true;
  });
  std::string config = testing::read_bytes(dir / "b" / "config.json");
  const size_t at = config.find("\"sliding_window\"");
  ASSERT_NE(at, std::string::npos);
  const size_t colon = config.find(':', at), comma = config.find_first_of(",}", colon);
  config.replace(colon + 1, comma - colon - 1, " 77");
  testing::write_bytes(dir / "b" / "config.json", config);
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(dir / "a", dir / "b", report));
  ASSERT_EQ(report.tensor_differences.size(), 1u);
  EXPECT_EQ(report.tensor_differences[0].item, "model.language_model.layers.1.layer_scalar");
  ASSERT_EQ(report.config_differences.size(), 1u);
  EXPECT_EQ(report.config_differences[0].item, "text_config.sliding_window");
}

TEST(Hf2Mcore, RefusesATensorWhoseShapeDisagreesWithTheConfigAndLeavesNoOutput) {
  ScratchDir dir;
  testing::copy_checkpoint(tiny("tiny-e4b"), dir / "hf", [](testing::Tensor& t) {
    if (t.spec.name == "model.language_model.layers.2.self_attn.o_proj.weight") {
      t.spec.shape = {t.spec.shape[0] / 2, t.spec.shape[1]};
      t.bytes.resize(t.bytes.size() / 2);
    }
    return true;
  });
  auto r = to_mcore(dir / "hf", dir / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.language_model.layers.2.self_attn.o_proj.weight"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Hf2Mcore, RefusesAMissingTensorAndANonFiniteValueNamingThem) {
  ScratchDir dir;
  testing::copy_checkpoint(tiny("tiny-26b-a4b"), dir / "missing",
                           [](testing::Tensor& t) { return t.spec.name != "model.language_model.layers.3.router.scale"; });
  auto r = to_mcore(dir / "missing", dir / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.language_model.layers.3.router.scale"), std::string::npos) << r.status().message();

  testing::copy_checkpoint(tiny("tiny-26b-a4b"), dir / "nan", [](testing::Tensor& t) {
    if (t.spec.name == "model.language_model.layers.4.experts.down_proj") {
      const uint16_t nan = 0x7fc0;  // bf16 NaN
      std::memcpy(t.bytes.data() + 10, &nan, 2);
    }
    return true;
  });
  r = to_mcore(dir / "nan", dir / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.language_model.layers.4.experts.down_proj"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("NaN"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Hf2Mcore, RunConfigStatesTheVlProvidersTokenIdsOfTheCheckpointNotTheReleasedDefaults) {
  auto vl = gemma4::load_config((tiny("tiny-e4b-vla") / "config.json").string());
  ASSERT_OK(vl);
  const std::string yaml = run_config_yaml(*vl, DType::kBF16);
  for (const char* line : {"\n  image_token_id: 4\n", "\n  video_token_id: 7\n", "\n  audio_token_id: 8\n",
                           "\n  vision_soft_tokens_per_image: 280\n", "\n  bos_token_id: 2\n", "\n  eos_token_id: 1\n",
                           "\n  scatter_embedding_sequence_parallel: false\n"})
    EXPECT_NE(yaml.find(line), std::string::npos) << line << yaml;
  auto causal = gemma4::load_config((tiny("tiny-e2b") / "config.json").string());
  ASSERT_OK(causal);
  EXPECT_EQ(run_config_yaml(*causal, DType::kF32).find("image_token_id"), std::string::npos) << "text providers have no such field";
}

TEST(Hf2Mcore, RefusesToReplaceAnExistingOutputWithoutForce) {
  ScratchDir dir;
  fs::create_directories(dir / "out");
  auto r = to_mcore(tiny("tiny-31b"), dir / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exists"), std::string::npos) << r.status().message();
}

TEST(Mcore2Hf, RefusesATruncatedDistcpFileNamingItAndLeavesNoOutput) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-31b"), dir / "m"));
  const fs::path file = dir / "m" / "iter_0000000" / "__0_0.distcp";
  fs::resize_file(file, fs::file_size(file) / 2);
  auto r = to_hf(dir / "m", dir / "hf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("__0_0.distcp"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir / "hf"));
}

TEST(Mcore2Hf, RefusesACheckpointWhoseTensorsDoNotMatchTheConfigNamingTheKey) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-31b"), dir / "m"));
  // Without the checkpoint's own configs, so the tensors (not the config comparison) are what disagree.
  fs::remove(dir / "m" / "iter_0000000" / "hf_config.json");
  fs::remove(dir / "m" / "iter_0000000" / "run_config.yaml");
  Mcore2HfOptions o;
  o.mcore = dir / "m";
  o.out = dir / "hf";
  o.reference_hf = tiny("tiny-26b-a4b");  // a MoE config for a dense checkpoint
  auto r = mcore2hf(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("language_model.decoder.layers."), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir / "hf"));
}

TEST(Mcore2Hf, RefusesAReferenceConfigThatDisagreesWithTheCheckpointsOwnNamingTheField) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-31b"), dir / "m"));
  Mcore2HfOptions o;
  o.mcore = dir / "m";
  o.out = dir / "hf";
  o.reference_hf = tiny("tiny-26b-a4b");
  auto r = mcore2hf(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("disagree on text_config.enable_moe_block"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(dir / "hf"));
}

TEST(Mcore2Hf, RefusesADirectoryThatIsNotACheckpoint) {
  ScratchDir dir;
  fs::create_directories(dir / "empty");
  auto r = to_hf(dir / "empty", dir / "hf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a torch_dist checkpoint"), std::string::npos) << r.status().message();
}

TEST(Mcore2Hf, ResolvesTheIterationFromTheTrackerAndFromTheIterationDirectory) {
  ScratchDir dir;
  ASSERT_OK(to_mcore(tiny("tiny-e2b"), dir / "m"));
  ASSERT_OK(to_hf(dir / "m", dir / "a"));
  ASSERT_OK(to_hf(dir / "m" / "iter_0000000", dir / "b"));
  RoundtripReport report;
  ASSERT_OK(compare_hf_checkpoints(dir / "a", dir / "b", report));
  EXPECT_TRUE(report.identical());
  testing::write_bytes(dir / "m" / "latest_checkpointed_iteration.txt", "banana");
  auto r = to_hf(dir / "m", dir / "c");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("latest_checkpointed_iteration.txt"), std::string::npos);
}

}  // namespace
}  // namespace g4::convert
