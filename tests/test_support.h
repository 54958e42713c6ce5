// Helpers shared by the GoogleTest suites: Status matchers, scratch directories, raw safetensors bytes.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/status.h"

#define EXPECT_OK(expr)                                   \
  do {                                                    \
    const auto& g4_s_ = (expr);                           \
    EXPECT_TRUE(g4_s_.ok()) << ::g4::testing::status_string(g4_s_);     \
  } while (0)
#define ASSERT_OK(expr)                                   \
  do {                                                    \
    const auto& g4_s_ = (expr);                           \
    ASSERT_TRUE(g4_s_.ok()) << ::g4::testing::status_string(g4_s_);     \
  } while (0)

namespace g4::testing {

inline std::string status_string(const Status& s) { return s.to_string(); }
template <class T>
std::string status_string(const Result<T>& r) { return r.status().to_string(); }

// A fresh directory under the system temp dir, removed at scope exit.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Bytes of a safetensors file: 8-byte length, `header` verbatim, then `data`.
std::string safetensors_bytes(const std::string& header, const std::string& data);
void write_bytes(const std::filesystem::path& path, const std::string& bytes);
std::string read_bytes(const std::filesystem::path& path);

// Runs the built g4convert binary with `args`; returns the exit code and captures stdout+stderr.
int run_g4convert(const std::string& args, std::string* output);

std::filesystem::path source_dir();

}  // namespace g4::testing
