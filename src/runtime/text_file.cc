#include "runtime/text_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/regular_file.h"

namespace g4 {

Result<std::string> read_text_file(const std::filesystem::path& path, size_t max_bytes) {
  G4_ASSIGN_OR_RETURN(RegularFile file, RegularFile::open(path));
  if (file.size() > max_bytes)
    return Status::invalid_argument(path.string() + ": " + std::to_string(file.size()) + " bytes is too large for this file");
  std::string text(static_cast<size_t>(file.size()), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(file.fd(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::io_error(path.string() + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;  // shrank since the stat: keep what is there
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace g4
