// OutputPolicy: no output may equal, contain or lie inside an input (by real path and by device+inode), an
// existing output needs --force and even then only an earlier output is replaced, and leftovers of killed
// runs are swept.
#include "runtime/output_policy.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

// An input checkpoint directory with one file.
fs::path make_input(const ScratchDir& root, const std::string& name = "in") {
  fs::create_directories(root / name);
  testing::write_bytes(root / name / "config.json", "{}");
  return root / name;
}

void expect_refused(const Result<OutputDir>& r, const std::string& words) {
  ASSERT_FALSE(r.ok()) << "the output was allowed";
  EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
}

TEST(OutputPolicy, RefusesTheInputItselfEvenWithForce) {
  ScratchDir root;
  const fs::path in = make_input(root);
  OutputPolicy policy(true);
  policy.protect(in);
  expect_refused(policy.directory(in, looks_like_hf_checkpoint_dir), "is the input");
  EXPECT_EQ(testing::read_bytes(in / "config.json"), "{}");
}

TEST(OutputPolicy, RefusesAParentOfTheInputEvenWithForce) {
  ScratchDir root;
  const fs::path in = make_input(root, "models/in");
  OutputPolicy policy(true);
  policy.protect(in);
  expect_refused(policy.directory(root / "models", looks_like_hf_checkpoint_dir), "contains the input");
  EXPECT_TRUE(fs::exists(in / "config.json"));
}

TEST(OutputPolicy, RefusesAPathInsideTheInput) {
  ScratchDir root;
  const fs::path in = make_input(root);
  OutputPolicy policy;
  policy.protect(in);
  expect_refused(policy.directory(in / "sub", looks_like_hf_checkpoint_dir), "lies inside the input");
  auto file = policy.file(in / "model.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("lies inside the input"), std::string::npos);
  EXPECT_EQ(fs::directory_iterator(in)->path().filename(), "config.json") << "nothing was created inside the input";
}

TEST(OutputPolicy, SeesThroughDotDotAndSymlinks) {
  ScratchDir root;
  const fs::path in = make_input(root);
  fs::create_directory(root / "other");
  fs::create_directory_symlink(in, root / "link-to-in");
  OutputPolicy policy(true);
  policy.protect(in);
  expect_refused(policy.directory(root / "other" / ".." / "in", looks_like_hf_checkpoint_dir), "is the input");
  expect_refused(policy.directory(root / "link-to-in", looks_like_hf_checkpoint_dir), "is the input");
  expect_refused(policy.directory(root / "link-to-in" / "sub", looks_like_hf_checkpoint_dir), "lies inside the input");
  // The input named through a link protects the real directory too.
  OutputPolicy via_link(true);
  via_link.protect(root / "link-to-in");
  expect_refused(via_link.directory(in, looks_like_hf_checkpoint_dir), "is the input");
}

TEST(OutputPolicy, RefusesAHardLinkOfAnInputFile) {
  ScratchDir root;
  const fs::path in = make_input(root);
  fs::create_hard_link(in / "config.json", root / "alias.json");
  OutputPolicy policy(true);
  policy.protect(in / "config.json");
  auto f = policy.file(root / "alias.json");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("is the input"), std::string::npos) << f.status().message();
}

TEST(OutputPolicy, ProtectsWhereAnInputDirectorysSymlinksPoint) {
  // A hub cache: the snapshot holds links into blobs/.
  ScratchDir root;
  fs::create_directories(root / "blobs");
  testing::write_bytes(root / "blobs" / "abc123", "weights");
  fs::create_directories(root / "snapshot");
  fs::create_symlink(root / "blobs" / "abc123", root / "snapshot" / "model.safetensors");
  OutputPolicy policy(true);
  policy.protect(root / "snapshot");
  EXPECT_FALSE(policy.file(root / "blobs" / "abc123").ok());
  expect_refused(policy.directory(root / "blobs", looks_like_hf_checkpoint_dir), "contains the input");
  EXPECT_EQ(testing::read_bytes(root / "blobs" / "abc123"), "weights");
}

TEST(OutputPolicy, SeesThroughABindMount) {
  ScratchDir root;
  const fs::path in = make_input(root);
  fs::create_directory(root / "mnt");
  if (::mount(in.c_str(), (root / "mnt").c_str(), nullptr, MS_BIND, nullptr) != 0)
    GTEST_SKIP() << "bind mounts need CAP_SYS_ADMIN here (" << std::strerror(errno) << "); device+inode matching is still covered by hard links";
  OutputPolicy policy(true);
  policy.protect(in);
  expect_refused(policy.directory(root / "mnt", looks_like_hf_checkpoint_dir), "is the input");
  expect_refused(policy.directory(root / "mnt" / "sub", looks_like_hf_checkpoint_dir), "lies inside the input");
  ::umount((root / "mnt").c_str());
}

TEST(OutputPolicy, RefusesOverlappingOutputsOfOneRun) {
  ScratchDir root;
  OutputPolicy policy;
  auto first = policy.file(root / "out.safetensors");
  ASSERT_OK(first);
  auto second = policy.file(root / "out.safetensors");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another output of this run"), std::string::npos);
}

TEST(OutputPolicy, ForceNeverReplacesACheckpointOfTheOtherKind) {
  ScratchDir root;
  const fs::path hf = make_input(root, "hf");  // config.json: an HF checkpoint
  fs::create_directories(root / "mc" / "iter_0000000");
  OutputPolicy policy(true);
  expect_refused(policy.directory(hf, looks_like_megatron_checkpoint_dir), "does not look like an earlier output");
  expect_refused(policy.directory(root / "mc", looks_like_hf_checkpoint_dir), "does not look like an earlier output");
  EXPECT_OK(policy.directory(root / "mc", looks_like_megatron_checkpoint_dir));
}

TEST(OutputPolicy, ForceReplacesOnlyAnEarlierOutputOfTheSameKind) {
  ScratchDir root;
  fs::create_directories(root / "home");
  testing::write_bytes(root / "home" / "notes.txt", "precious");
  testing::write_bytes(root / "file", "x");
  fs::create_directories(root / "dir");
  testing::write_bytes(root / "dir" / "config.json", "{}");
  OutputPolicy policy(true);
  expect_refused(policy.directory(root / "home", looks_like_hf_checkpoint_dir), "does not look like an earlier output");
  expect_refused(policy.directory(root / "file", looks_like_hf_checkpoint_dir), "is not a directory");
  auto f = policy.file(root / "dir");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not a regular file"), std::string::npos);
  EXPECT_EQ(testing::read_bytes(root / "home" / "notes.txt"), "precious");
}

// A process id that no longer runs: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

TEST(OutputPolicy, SweepsLeftoversOfKilledRunsAndSaysSo) {
  ScratchDir root;
  const fs::path stale = root / (".ckpt.g4tmp-" + std::to_string(dead_pid()));
  fs::create_directories(stale / "iter_0000000");
  testing::write_bytes(stale / "iter_0000000" / "__0_0.distcp", "partial");
  const fs::path live = root / (".ckpt.g4tmp-" + std::to_string(::getppid()));  // its process runs
  fs::create_directories(live);
  const fs::path other = root / (".other.g4tmp-" + std::to_string(dead_pid()));  // another target's: not ours to judge
  fs::create_directories(other);
  std::vector<std::string> notices;
  OutputPolicy policy(false, [&](const std::string& n) { notices.push_back(n); });
  auto out = policy.directory(root / "ckpt", looks_like_hf_checkpoint_dir);
  ASSERT_OK(out);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].find(stale.filename().string()), std::string::npos);
  EXPECT_NE(notices[0].find("interrupted run"), std::string::npos);
}

TEST(OutputPolicy, KeepsATempDirectoryWhoseLockIsHeld) {
  ScratchDir root;
  const fs::path busy = root / (".ckpt.g4tmp-" + std::to_string(dead_pid()));
  fs::create_directories(busy);
  int fd = ::open(busy.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  // flock locks belong to the open file description, so a second open in this process conflicts like
  // another process's would.
  OutputPolicy policy;
  ASSERT_OK(policy.directory(root / "ckpt", looks_like_hf_checkpoint_dir));
  EXPECT_TRUE(fs::exists(busy));
  ::close(fd);
}

TEST(OutputPolicy, ScratchDirectoriesAreSweptAndRemoved) {
  const fs::path stale = fs::temp_directory_path() / ("g4convert-policytest-" + std::to_string(dead_pid()));
  fs::create_directories(stale);
  fs::path made;
  {
    OutputPolicy policy;
    auto scratch = policy.scratch("g4convert-policytest");
    ASSERT_OK(scratch);
    made = scratch->temp_path();
    EXPECT_TRUE(fs::is_directory(made));
  }
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(made));
}

}  // namespace
}  // namespace g4
