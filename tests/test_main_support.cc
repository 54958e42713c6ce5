#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "test_support.h"

namespace g4::testing {
namespace fs = std::filesystem;

namespace {
// The build's absolute paths, unless the environment names others: bench/gpu_check.sh runs this binary on a
// machine where the checkout and the build live elsewhere (G4_SOURCE_DIR: the repo root, G4_BINARY: g4convert).
// Only source_dir() and run_g4convert() read them; unset or empty means the compiled-in path.
std::string env_or(const char* name, const char* compiled_in) {
  const char* value = std::getenv(name);
  return value && *value ? value : compiled_in;
}
}  // namespace

ScratchDir::ScratchDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() / ("g4test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int run_g4convert(const std::string& args, std::string* output) {
  std::string cmd = env_or("G4_BINARY", G4_BINARY) + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf;
  std::string text;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) text.append(buf.data(), n);
  int status = ::pclose(pipe);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

fs::path source_dir() { return env_or("G4_SOURCE_DIR", G4_SOURCE_DIR); }

}  // namespace g4::testing
