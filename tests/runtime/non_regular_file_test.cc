// A FIFO (or directory, device) in place of any file the tool reads is refused at once with a one-line error
// (exit 2; inspect lists an unreadable model file as a problem, exit 1), never a read that waits forever for a
// writer (runtime/regular_file.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <future>

#include "runtime/mapped_file.h"
#include "runtime/text_file.h"
#include "test_support.h"

namespace g4 {
namespace {
namespace fs = std::filesystem;
using testing::ScratchDir;

fs::path testdata(const std::string& name) { return testing::source_dir() / "testdata" / name; }

void make_fifo(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << path;
}

// Runs `open` on a FIFO; a reader blocked in open() is released by opening the FIFO for writing, so that a
// regression fails the test instead of hanging it.
template <class Open>
Status open_fifo_with_watchdog(const fs::path& fifo, Open open) {
  auto result = std::async(std::launch::async, [&] { return open(fifo); });
  if (result.wait_for(std::chrono::seconds(5)) == std::future_status::ready) return result.get();
  int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) ::close(fd);
  (void)result.get();
  return Status::internal("blocked for 5 s opening " + fifo.string());
}

TEST(NonRegularFile, FifoIsRefusedWithoutBlockingByEveryReader) {
  ScratchDir dir;
  make_fifo(dir / "fifo");
  Status mapped = open_fifo_with_watchdog(dir / "fifo", [](const fs::path& p) { return MappedFile::open(p).status(); });
  EXPECT_EQ(mapped.code(), ErrorCode::kInvalidArgument) << mapped.to_string();
  EXPECT_EQ(mapped.message(), (dir / "fifo").string() + ": is a FIFO, expected a regular file");
  Status text = open_fifo_with_watchdog(dir / "fifo", [](const fs::path& p) { return read_text_file(p, 1024).status(); });
  EXPECT_EQ(text.code(), ErrorCode::kInvalidArgument) << text.to_string();
  EXPECT_EQ(text.message(), (dir / "fifo").string() + ": is a FIFO, expected a regular file");
}

TEST(NonRegularFile, DirectoriesAndDevicesAreRefusedByName) {
  ScratchDir dir;
  fs::create_directories(dir / "sub");
  auto d = MappedFile::open(dir / "sub");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(), (dir / "sub").string() + ": is a directory, expected a regular file");
  auto dev = read_text_file("/dev/zero", 1024);  // would otherwise read zeros forever (its size is 0)
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().message(), "/dev/zero: is a character device, expected a regular file");
  auto missing = read_text_file(dir / "absent.json", 1024);
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
}

// The binary under a hard timeout: exit code, or -1 when it had to be killed.
int run_bounded(const std::string& args, std::string* output) {
  const std::string cmd = "timeout -s KILL 20 " + std::string(G4_BINARY) + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return -2;
  std::array<char, 4096> buf;
  output->clear();
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output->append(buf.data(), n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) && WEXITSTATUS(status) != 137 ? WEXITSTATUS(status) : -1;
}

void expect_refused(const std::string& args, const fs::path& fifo) {
  std::string out;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run_bounded(args, &out), 2) << args << "\n" << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << args;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find(fifo.string() + ": is a FIFO"), std::string::npos) << out;
}

TEST(NonRegularFile, CommandsGivenAFifoExitTwoAtOnce) {
  ScratchDir dir;
  const fs::path hf = dir / "hf";
  fs::create_directories(hf);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(testdata("tiny-31b") / f, hf / f);
  std::string out;
  ASSERT_EQ(run_bounded("hf2mcore --quiet --hf " + hf.string() + " --out " + (dir / "mc").string(), &out), 0) << out;

  make_fifo(hf / "model.safetensors");
  expect_refused("forward --quiet --hf " + hf.string() + " --ids 2,3", hf / "model.safetensors");
  expect_refused("hf2mcore --quiet --hf " + hf.string() + " --out " + (dir / "mc2").string(), hf / "model.safetensors");
  // inspect lists it as the input's problem (exit 1), as it does any other unreadable model file.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run_bounded("inspect " + hf.string(), &out), 1) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_NE(out.find("[safetensors] " + (hf / "model.safetensors").string() + ": is a FIFO, expected a regular file\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("[tower]"), std::string::npos) << "tower tensors may be in the unreadable file: " << out;
  make_fifo(hf / "config.json");
  expect_refused("inspect " + hf.string(), hf / "config.json");

  make_fifo(dir / "input.json");
  expect_refused("forward --quiet --hf " + testdata("tiny-31b").string() + " --input " + (dir / "input.json").string(),
                 dir / "input.json");

  const fs::path iter = dir / "mc" / "iter_0000000";
  fs::path distcp;
  for (const auto& e : fs::directory_iterator(iter))
    if (e.path().extension() == ".distcp") distcp = e.path();
  ASSERT_FALSE(distcp.empty());
  make_fifo(distcp);
  expect_refused("inspect " + (dir / "mc").string(), distcp);
  make_fifo(iter / ".metadata");
  expect_refused("inspect " + (dir / "mc").string(), iter / ".metadata");
}

}  // namespace
}  // namespace g4
