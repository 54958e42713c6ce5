// Atomic outputs. A directory or file is written under a hidden temp sibling (".NAME.g4tmp-PID"), locked
// (flock) for as long as this process writes it; commit() fsyncs it and renames it into place. A run that
// fails or is killed leaves at most that temp sibling, never anything under the requested name that looks
// complete, and the next run to the same target sweeps it (OutputPolicy). Only OutputPolicy creates these: it
// decides whether the target may be written at all.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "runtime/status.h"

namespace g4 {

class OutputPolicy;

// The flock held on a temp sibling while it is being written; released on destruction (or by the kernel when
// the process dies), which is how a later run tells a leftover from work in progress.
class TempLock {
 public:
  TempLock() = default;
  static Result<TempLock> acquire(const std::filesystem::path& path);  // fails when another process holds it
  TempLock(TempLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  TempLock& operator=(TempLock&& other) noexcept;
  TempLock(const TempLock&) = delete;
  ~TempLock();

 private:
  explicit TempLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// What a temp sibling of `target` is called: ".NAME.<tag>-PID" beside it.
std::filesystem::path temp_sibling(const std::filesystem::path& target, std::string_view tag);

// What OutputDir and OutputFile share: the target, its locked temp sibling, and the commit that puts the
// finished sibling in place. Uncommitted, the sibling is removed on destruction.
class PendingOutput {
 public:
  PendingOutput(PendingOutput&& other) noexcept;
  PendingOutput& operator=(PendingOutput&&) = delete;
  PendingOutput(const PendingOutput&) = delete;
  ~PendingOutput();

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  // `status` with every mention of the temp sibling replaced by the target's name: users never see the
  // hidden sibling, and an error about a file being written names the output they asked for.
  Status in_user_terms(const Status& status) const;
  // Puts the finished output in place. With replace, an existing output is swapped out atomically and only
  // then removed, so it survives any failure before this point.
  Status commit();

 protected:
  PendingOutput(std::filesystem::path final_path, std::filesystem::path temp, bool replace, TempLock lock)
      : final_(std::move(final_path)), temp_(std::move(temp)), replace_(replace), lock_(std::move(lock)) {}

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool replace_ = false;
  bool committed_ = false;
  TempLock lock_;
};

// A directory written atomically: write under file(name), then commit().
class OutputDir : public PendingOutput {
 public:
  std::filesystem::path file(const std::string& name) const { return temp_path() / name; }

 private:
  friend class OutputPolicy;
  using PendingOutput::PendingOutput;
};

// One file written atomically: write to path(), then commit().
class OutputFile : public PendingOutput {
 public:
  const std::filesystem::path& path() const { return temp_path(); }
  // Writes `bytes` to path(), fsyncs and commits.
  Status write_and_commit(std::string_view bytes);

 private:
  friend class OutputPolicy;
  using PendingOutput::PendingOutput;
};

// Writes `bytes` to `path` (created or truncated) and fsyncs it.
Status write_file_synced(const std::filesystem::path& path, std::string_view bytes);
// Writes all of `data` at `offset` of the open file `fd` (retrying short writes); errors name `path`.
Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset, const std::string& path);
// fsyncs an already written file or directory.
Status fsync_path(const std::filesystem::path& path);

}  // namespace g4
