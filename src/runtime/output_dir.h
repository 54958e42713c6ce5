// Atomic output directories. Everything is written into a hidden temp sibling
// (".NAME.g4tmp-PID"); commit() fsyncs it and renames it into place. A run that fails or is killed
// leaves at most that temp directory, never a directory under the requested name that looks complete.
// An existing output is refused unless `force`, in which case it is replaced only at commit.
#pragma once

#include <filesystem>
#include <string>

#include "runtime/status.h"

namespace g4 {

class OutputDir {
 public:
  static Result<OutputDir> create(const std::filesystem::path& final_path, bool force);

  OutputDir(OutputDir&& other) noexcept;
  OutputDir& operator=(OutputDir&&) = delete;
  OutputDir(const OutputDir&) = delete;
  ~OutputDir();  // removes the temp directory unless committed

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  std::filesystem::path file(const std::string& name) const { return temp_ / name; }

  Status commit();

 private:
  OutputDir(std::filesystem::path final_path, std::filesystem::path temp, bool force)
      : final_(std::move(final_path)), temp_(std::move(temp)), force_(force) {}

  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool force_ = false;
  bool committed_ = false;
};

// Writes `bytes` to `path` (created or truncated) and fsyncs it.
Status write_file_synced(const std::filesystem::path& path, std::string_view bytes);
// Writes all of `data` at `offset` of the open file `fd` (retrying short writes); errors name `path`.
Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset, const std::string& path);
// fsyncs an already written file or directory.
Status fsync_path(const std::filesystem::path& path);

}  // namespace g4
