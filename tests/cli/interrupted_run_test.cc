// A run killed with SIGKILL mid-write leaves nothing under the target's name, and the next run to the same
// target sweeps the hidden leftover (and says so). The input is several hundred MB so the kill lands while
// the .distcp files are being written.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

pid_t spawn_g4convert(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> argv{const_cast<char*>(G4_BINARY)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(G4_BINARY, argv.data());
    ::_exit(127);
  }
  return pid;
}

// Bytes under `dir` (0 when it does not exist).
uint64_t bytes_under(const fs::path& dir) {
  std::error_code ec;
  uint64_t n = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  return n;
}

// Waits until `dir` holds at least `bytes`, or the child exits; true when caught mid-write.
bool wait_for_bytes(const fs::path& dir, uint64_t bytes, pid_t child) {
  for (int i = 0; i < 6000; ++i) {
    if (bytes_under(dir) >= bytes) return true;
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(InterruptedRun, KilledHf2McoreLeavesNothingCompleteAndTheNextRunSweepsItsTempDirectory) {
  ScratchDir root;
  std::string out;
  ASSERT_EQ(testing::run_g4convert("synth --preset e2b --layers 1 --out " + (root / "in").string() + " --quiet", &out), 0) << out;
  ASSERT_GT(bytes_under(root / "in"), 300u << 20) << "the input must be large enough to kill the conversion mid-write";

  const pid_t child = spawn_g4convert({"hf2mcore", "--hf", (root / "in").string(), "--out", (root / "out").string(), "-j", "1", "--quiet"});
  const fs::path temp = root / (".out.g4tmp-" + std::to_string(child));
  ASSERT_TRUE(wait_for_bytes(temp, 32u << 20, child)) << "hf2mcore finished before it could be killed";
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(root / "out")) << "nothing complete-looking under the target's name";
  ASSERT_TRUE(fs::exists(temp)) << "the killed run's temp directory is the leftover this test sweeps";

  ASSERT_EQ(testing::run_g4convert("hf2mcore --hf " + (root / "in").string() + " --out " + (root / "out").string() + " --quiet", &out), 0)
      << out;
  EXPECT_NE(out.find("g4convert: note: removed " + temp.string()), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(root / "out" / "iter_0000000" / ".metadata"));
  for (const auto& e : fs::directory_iterator(root.path()))
    EXPECT_EQ(e.path().filename().string().find(".g4tmp"), std::string::npos) << e.path();
}

TEST(InterruptedRun, KilledRoundtripScratchIsSweptByTheNextRoundtrip) {
  ScratchDir root;
  std::string out;
  ASSERT_EQ(testing::run_g4convert("synth --preset e2b --layers 1 --out " + (root / "in").string() + " --quiet", &out), 0) << out;
  const pid_t child = spawn_g4convert({"roundtrip", "--hf", (root / "in").string(), "-j", "1", "--quiet"});
  const fs::path scratch = fs::temp_directory_path() / ("g4convert-roundtrip-" + std::to_string(child));
  ASSERT_TRUE(wait_for_bytes(scratch, 32u << 20, child)) << "roundtrip finished before it could be killed";
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(fs::exists(scratch));
  ASSERT_EQ(testing::run_g4convert("roundtrip --hf " + (testing::source_dir() / "testdata" / "tiny-31b").string() + " --quiet", &out), 0)
      << out;
  EXPECT_NE(out.find("removed " + scratch.string()), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(scratch));
}

}  // namespace
}  // namespace g4
