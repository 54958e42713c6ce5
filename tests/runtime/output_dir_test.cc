// The atomic mechanics of OutputDir and OutputFile (handed out by OutputPolicy).
#include "runtime/output_dir.h"

#include "runtime/output_policy.h"
#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

TEST(OutputDir, WritesIntoAHiddenSiblingAndRenamesOnCommit) {
  ScratchDir root;
  OutputPolicy policy;
  auto out = policy.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_OK(out);
  EXPECT_EQ(out->temp_path().parent_path(), fs::absolute(root.path()));
  EXPECT_EQ(out->temp_path().filename().string().rfind(".ckpt.g4tmp-", 0), 0u);
  ASSERT_OK(write_file_synced(out->file("a.txt"), "hello"));
  EXPECT_FALSE(fs::exists(root / "ckpt")) << "nothing under the final name before commit";
  ASSERT_OK(out->commit());
  EXPECT_EQ(testing::read_bytes(root / "ckpt" / "a.txt"), "hello");
  EXPECT_FALSE(fs::exists(out->temp_path()));
}

TEST(OutputDir, AbandonedOutputLeavesNothingBehind) {
  ScratchDir root;
  fs::path temp;
  {
    OutputPolicy policy;
    auto out = policy.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
    ASSERT_OK(out);
    temp = out->temp_path();
    ASSERT_OK(write_file_synced(out->file("partial.safetensors"), "half"));
  }  // a failure path returns without commit()
  EXPECT_FALSE(fs::exists(root / "ckpt"));
  EXPECT_FALSE(fs::exists(temp));
}

TEST(OutputDir, RefusesAnExistingOutputUnlessForcedAndKeepsTheOldOneUntilCommit) {
  ScratchDir root;
  fs::create_directory(root / "ckpt");
  testing::write_bytes(root / "ckpt" / "config.json", "old");
  OutputPolicy plain;
  auto refused = plain.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--force"), std::string::npos);
  OutputPolicy forcing(true);
  auto forced = forcing.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_OK(forced);
  EXPECT_EQ(testing::read_bytes(root / "ckpt" / "config.json"), "old") << "the old output stays until the new one is complete";
  ASSERT_OK(write_file_synced(forced->file("new.txt"), "new"));
  ASSERT_OK(forced->commit());
  EXPECT_FALSE(fs::exists(root / "ckpt" / "config.json"));
  EXPECT_EQ(testing::read_bytes(root / "ckpt" / "new.txt"), "new");
  for (const auto& e : fs::directory_iterator(root.path()))
    EXPECT_EQ(e.path().filename(), "ckpt") << "no temp or trash sibling left: " << e.path();
}

TEST(OutputDir, MissingParentIsNotFound) {
  OutputPolicy policy;
  auto out = policy.directory("/nonexistent-parent/ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), ErrorCode::kNotFound);
}

TEST(OutputDir, ErrorsNameTheTargetNotTheHiddenTempDirectory) {
  ScratchDir root;
  OutputPolicy policy;
  auto out = policy.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_OK(out);
  Status s = out->in_user_terms(Status::io_error(out->file("__0_0.distcp").string() + ": write failed"));
  EXPECT_EQ(s.message(), (fs::absolute(root.path()) / "ckpt" / "__0_0.distcp").string() + ": write failed");
}

TEST(OutputFile, WritesAtomicallyAndRefusesAnExistingFileUnlessForced) {
  ScratchDir root;
  {
    OutputPolicy policy;
    auto f = policy.file(root / "report.json");
    ASSERT_OK(f);
    EXPECT_FALSE(fs::exists(root / "report.json"));
    ASSERT_OK(f->write_and_commit("{}"));
  }
  EXPECT_EQ(testing::read_bytes(root / "report.json"), "{}");
  OutputPolicy plain;
  EXPECT_FALSE(plain.file(root / "report.json").ok());
  OutputPolicy forcing(true);
  auto again = forcing.file(root / "report.json");
  ASSERT_OK(again);
  ASSERT_OK(again->write_and_commit("{\"v\": 2}"));
  EXPECT_EQ(testing::read_bytes(root / "report.json"), "{\"v\": 2}");
}

TEST(OutputFile, AbandonedFileLeavesNothing) {
  ScratchDir root;
  {
    OutputPolicy policy;
    auto f = policy.file(root / "logits.safetensors");
    ASSERT_OK(f);
    ASSERT_OK(write_file_synced(f->path(), "partial"));
  }
  EXPECT_TRUE(fs::is_empty(root.path()));
}

}  // namespace
}  // namespace g4
