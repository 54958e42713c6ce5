#include "runtime/output_dir.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace g4 {
namespace fs = std::filesystem;

namespace {
std::string errno_text(int err) { return std::strerror(err); }

// rename(2) variants: kSwap exchanges two existing paths atomically; kNoReplace fails when `to` exists.
enum class RenameMode { kNoReplace, kSwap };
int rename_with(const fs::path& from, const fs::path& to, RenameMode mode) {
  return ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), mode == RenameMode::kSwap ? RENAME_EXCHANGE : RENAME_NOREPLACE);
}

void remove_quietly(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
}

// For filesystems without renameat2's flags: move an old output aside, put the new one in, drop the old one.
Status put_in_place_by_moving_aside(const fs::path& temp, const fs::path& final, bool replace) {
  std::error_code ec;
  const bool had_old = fs::exists(fs::symlink_status(final, ec));
  if (had_old && !replace) return Status::invalid_argument(final.string() + ": appeared while we were writing; not replacing it");
  const fs::path trash = temp_sibling(final, "g4old");
  if (had_old) {
    remove_quietly(trash);
    fs::rename(final, trash, ec);
    if (ec) return Status::io_error(final.string() + ": cannot move the old output aside: " + ec.message());
  }
  fs::rename(temp, final, ec);
  if (ec) {
    std::error_code back;
    if (had_old) fs::rename(trash, final, back);
    return Status::io_error(final.string() + ": cannot rename the finished output into place: " + ec.message());
  }
  if (had_old) remove_quietly(trash);
  return {};
}

// Puts `temp` at `final`. Without `replace`, an existing `final` (one that appeared while we wrote) is never
// touched. With it, the old one is swapped out in one step and removed only after the new one is in place.
Status put_in_place(const fs::path& temp, const fs::path& final, bool replace) {
  if (rename_with(temp, final, RenameMode::kNoReplace) == 0) return {};
  int err = errno;
  if (err == EEXIST) {
    if (!replace) return Status::invalid_argument(final.string() + ": appeared while we were writing; not replacing it");
    if (rename_with(temp, final, RenameMode::kSwap) == 0) {
      remove_quietly(temp);  // it now holds the old output
      return {};
    }
    err = errno;
  }
  if (err == EINVAL || err == ENOSYS) return put_in_place_by_moving_aside(temp, final, replace);
  return Status::io_error(final.string() + ": cannot rename the finished output into place: " + errno_text(err));
}
}  // namespace

fs::path temp_sibling(const fs::path& target, std::string_view tag) {
  return target.parent_path() / ("." + target.filename().string() + "." + std::string(tag) + "-" + std::to_string(::getpid()));
}

Result<TempLock> TempLock::acquire(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Status::io_error(path.string() + ": cannot open to lock: " + errno_text(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    return Status::io_error(path.string() + ": locked by another process (" + errno_text(err) + ")");
  }
  return TempLock(fd);
}

TempLock& TempLock::operator=(TempLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

TempLock::~TempLock() {
  if (fd_ >= 0) ::close(fd_);
}

Status fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::io_error(path.string() + ": cannot open for fsync: " + errno_text(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::io_error(path.string() + ": fsync failed: " + errno_text(err));
  return {};
}

Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io_error(path + ": write failed at byte " + std::to_string(offset) + ": " + errno_text(errno));
    }
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Status write_file_synced(const fs::path& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error(path.string() + ": cannot create: " + errno_text(errno));
  Status s = pwrite_all(fd, bytes.data(), bytes.size(), 0, path.string());
  if (s.ok() && ::fsync(fd) != 0) s = Status::io_error(path.string() + ": fsync failed: " + errno_text(errno));
  if (::close(fd) != 0 && s.ok()) s = Status::io_error(path.string() + ": close failed: " + errno_text(errno));
  return s;
}

PendingOutput::PendingOutput(PendingOutput&& other) noexcept
    : final_(std::move(other.final_)), temp_(std::move(other.temp_)), replace_(other.replace_), committed_(other.committed_),
      lock_(std::move(other.lock_)) {
  other.committed_ = true;  // the moved-from object owns nothing
}

PendingOutput::~PendingOutput() {
  if (!committed_ && !temp_.empty()) remove_quietly(temp_);
}

Status PendingOutput::in_user_terms(const Status& status) const {
  if (status.ok()) return status;
  std::string message = status.message();
  const std::string from = temp_.string(), to = final_.string();
  for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at + to.size()))
    message.replace(at, from.size(), to);
  return Status(status.code(), message);
}

Status PendingOutput::commit() {
  if (committed_) return Status::internal(final_.string() + ": output committed twice");
  G4_RETURN_IF_ERROR(fsync_path(temp_));
  G4_RETURN_IF_ERROR(put_in_place(temp_, final_, replace_));
  committed_ = true;
  return fsync_path(final_.parent_path());
}

Status OutputFile::write_and_commit(std::string_view bytes) {
  G4_RETURN_IF_ERROR(write_file_synced(path(), bytes));
  return commit();
}

}  // namespace g4
