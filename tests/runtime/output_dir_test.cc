#include "runtime/output_dir.h"

#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

TEST(OutputDir, WritesIntoAHiddenSiblingAndRenamesOnCommit) {
  ScratchDir root;
  auto out = OutputDir::create(root / "ckpt", false);
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
    auto out = OutputDir::create(root / "ckpt", false);
    ASSERT_OK(out);
    temp = out->temp_path();
    ASSERT_OK(write_file_synced(out->file("partial.safetensors"), "half"));
  }  // a failure path returns without commit()
  EXPECT_FALSE(fs::exists(root / "ckpt"));
  EXPECT_FALSE(fs::exists(temp));
}

TEST(OutputDir, RefusesAnExistingOutputUnlessForced) {
  ScratchDir root;
  fs::create_directory(root / "ckpt");
  testing::write_bytes(root / "ckpt" / "old.txt", "old");
  auto refused = OutputDir::create(root / "ckpt", false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--force"), std::string::npos);
  auto forced = OutputDir::create(root / "ckpt", true);
  ASSERT_OK(forced);
  EXPECT_TRUE(fs::exists(root / "ckpt" / "old.txt")) << "the old output stays until the new one is complete";
  ASSERT_OK(write_file_synced(forced->file("new.txt"), "new"));
  ASSERT_OK(forced->commit());
  EXPECT_FALSE(fs::exists(root / "ckpt" / "old.txt"));
  EXPECT_EQ(testing::read_bytes(root / "ckpt" / "new.txt"), "new");
}

TEST(OutputDir, MissingParentIsNotFound) {
  auto out = OutputDir::create("/nonexistent-parent/ckpt", false);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace g4
