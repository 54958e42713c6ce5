// The command-line contract on bad invocations: one "g4convert: error:" line and exit 2 for usage errors, a
// thread count that is a number (capped, with a note), a result that cannot be written is a failure, and
// pickles naming code-running globals are refused in DCP metadata too.
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>

#include "runtime/cuda_info.h"
#include "runtime/dcp/dcp_metadata.h"
#include "runtime/torch/pickle_reader.h"
#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(CliContract, UsageErrorsAreOneErrorLineAndExit2) {
  for (const std::string args : {"", "no-such-command", "synth --preset gpt5 --out /tmp/x", "hf2mcore --hf /tmp", "forward --dtype fp8"}) {
    std::string out;
    EXPECT_EQ(testing::run_g4convert(args, &out), 2) << args;
    EXPECT_EQ(lines(out), 1) << args << "\n" << out;
    EXPECT_EQ(out.rfind("g4convert: error: ", 0), 0u) << out;
  }
}

// --device cuda where no GPU is (CI, this build without nvcc, a machine without a driver): one line, exit 2, before
// any input is read; version lists the devices that work.
TEST(CliContract, DeviceCudaWithoutAGpuIsOneErrorLineAndExit2AndVersionListsDevices) {
  std::string out;
  ASSERT_EQ(testing::run_g4convert("version", &out), 0) << out;
  if (cuda_device_count() > 0) {
    EXPECT_NE(out.find("devices: cpu, cuda\n"), std::string::npos) << out;
    GTEST_SKIP() << "this machine has a GPU: --device cuda works here (tests/cuda run it)";
  }
  EXPECT_NE(out.find("devices: cpu\n"), std::string::npos) << out;
  const std::string tiny = (testing::source_dir() / "testdata" / "tiny-e2b").string();
  for (const std::string& args : {"forward --device cuda --hf " + tiny + " --ids 2,3", "verify --device cuda --hf " + tiny + " --mcore /nonexistent",
                                 "roundtrip --forward --device cuda --hf " + tiny}) {
    EXPECT_EQ(testing::run_g4convert(args, &out), 2) << args;
    EXPECT_EQ(lines(out), 1) << args << "\n" << out;
    EXPECT_EQ(out.rfind("g4convert: error: --device cuda: ", 0), 0u) << out;
  }
  EXPECT_EQ(testing::run_g4convert("roundtrip --device cuda --hf " + tiny, &out), 2) << out;
  EXPECT_EQ(out, "g4convert: error: roundtrip: --device needs --forward\n");
}

TEST(CliContract, ThreadCountMustBeANumberAndAbsurdCountsAreCapped) {
  std::string out;
  EXPECT_EQ(testing::run_g4convert("-j -1 presets", &out), 2) << out;
  EXPECT_EQ(testing::run_g4convert("-j abc presets", &out), 2) << out;
  EXPECT_EQ(testing::run_g4convert("-j 100000 presets", &out), 0) << out;
  EXPECT_NE(out.find("g4convert: note: -j 100000 capped at"), std::string::npos) << out;
}

TEST(CliContract, AResultThatCannotBeWrittenToStdoutIsAFailure) {
  testing::ScratchDir dir;
  const int status = std::system((std::string(G4_BINARY) + " presets --json >/dev/full 2>" + (dir / "err").string()).c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string err = testing::read_bytes(dir / "err");
  EXPECT_EQ(err.rfind("g4convert: error: cannot write the output to standard output", 0), 0u) << err;
}

TEST(CliContract, ATrackerThatIsNotAnIterationNumberIsRefused) {
  testing::ScratchDir dir;
  std::string out;
  ASSERT_EQ(testing::run_g4convert("hf2mcore --quiet --hf " + (testing::source_dir() / "testdata" / "tiny-31b").string() +
                                       " --out " + (dir / "m").string(), &out), 0) << out;
  testing::write_bytes(dir / "m" / "latest_checkpointed_iteration.txt", std::string("\0\xffseven", 7));
  EXPECT_EQ(testing::run_g4convert("mcore2hf --mcore " + (dir / "m").string() + " --out " + (dir / "hf").string(), &out), 2) << out;
  EXPECT_NE(out.find("latest_checkpointed_iteration.txt: expected an iteration or 'release'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "hf"));
}

TEST(CliContract, DcpMetadataNamingACodeRunningGlobalIsRefused) {
  EXPECT_TRUE(torch::names_code_execution("os.system"));
  EXPECT_TRUE(torch::names_code_execution("subprocess.Popen"));
  EXPECT_TRUE(torch::names_code_execution("builtins.eval"));
  EXPECT_TRUE(torch::names_code_execution("importlib.util.find_spec"));
  EXPECT_FALSE(torch::names_code_execution("torch.distributed.checkpoint.metadata.Metadata"));
  EXPECT_FALSE(torch::names_code_execution("megatron.core.dist_checkpointing.mapping.ShardedTensor"));
  EXPECT_FALSE(torch::names_code_execution("builtins.set"));
  // PROTO 2; GLOBAL os.system; EMPTY_TUPLE; REDUCE; STOP
  const std::string pickle = "\x80\x02" "cos\nsystem\n" ")R.";
  auto md = dcp::parse_metadata(std::as_bytes(std::span(pickle.data(), pickle.size())), "x/.metadata");
  ASSERT_FALSE(md.ok());
  EXPECT_NE(md.status().message().find("os.system"), std::string::npos) << md.status().message();
}

}  // namespace
}  // namespace g4
