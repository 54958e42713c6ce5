#include "runtime/output_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace g4 {
namespace fs = std::filesystem;

namespace {
std::string errno_text(int err) { return std::strerror(err); }
}  // namespace

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

Result<OutputDir> OutputDir::create(const fs::path& final_path, bool force) {
  if (final_path.empty()) return Status::invalid_argument("output directory name is empty");
  fs::path final_abs = fs::absolute(final_path).lexically_normal();
  if (final_abs.filename().empty()) final_abs = final_abs.parent_path();
  std::error_code ec;
  if (fs::exists(final_abs, ec) && !force)
    return Status::invalid_argument(final_abs.string() + ": already exists (pass --force to replace it)");
  fs::path parent = final_abs.parent_path();
  if (!fs::is_directory(parent, ec)) return Status::not_found(parent.string() + ": parent directory does not exist");
  fs::path temp = parent / ("." + final_abs.filename().string() + ".g4tmp-" + std::to_string(::getpid()));
  fs::remove_all(temp, ec);  // a leftover from an earlier killed run of this same pid number
  if (!fs::create_directory(temp, ec))
    return Status::io_error(temp.string() + ": cannot create temp directory: " + ec.message());
  return OutputDir(final_abs, temp, force);
}

OutputDir::OutputDir(OutputDir&& other) noexcept
    : final_(std::move(other.final_)), temp_(std::move(other.temp_)), force_(other.force_), committed_(other.committed_) {
  other.committed_ = true;  // the moved-from object owns nothing
}

OutputDir::~OutputDir() {
  if (committed_ || temp_.empty()) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

Status OutputDir::commit() {
  if (committed_) return Status::internal("output directory committed twice");
  G4_RETURN_IF_ERROR(fsync_path(temp_));
  std::error_code ec;
  fs::path trash;
  if (fs::exists(final_, ec)) {
    if (!force_) return Status::invalid_argument(final_.string() + ": appeared while we were writing; not replacing it");
    trash = final_.parent_path() / ("." + final_.filename().string() + ".g4old-" + std::to_string(::getpid()));
    fs::remove_all(trash, ec);
    fs::rename(final_, trash, ec);
    if (ec) return Status::io_error(final_.string() + ": cannot move the old output aside: " + ec.message());
  }
  fs::rename(temp_, final_, ec);
  if (ec) return Status::io_error(final_.string() + ": cannot rename the finished output into place: " + ec.message());
  committed_ = true;
  G4_RETURN_IF_ERROR(fsync_path(final_.parent_path()));
  if (!trash.empty()) fs::remove_all(trash, ec);
  return {};
}

}  // namespace g4
