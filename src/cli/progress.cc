#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace g4::cli {

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string human_seconds(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

bool Progress::stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && stderr_is_tty()), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (drawn_) std::fputc('\n', stderr);
}

void Progress::update(uint64_t bytes_done, uint64_t bytes_total, size_t items_done, size_t items_total) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  bool finished = bytes_done >= bytes_total && items_done >= items_total;
  if (drawn_ && !finished && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(bytes_done) / elapsed : 0;
  std::string eta = rate > 0 && bytes_total > bytes_done ? human_seconds(static_cast<double>(bytes_total - bytes_done) / rate) : "-";
  std::fprintf(stderr, "\r\033[K%s  %s / %s  %zu/%zu tensors  %s/s  ETA %s", label_.c_str(), human_bytes(bytes_done).c_str(),
               human_bytes(bytes_total).c_str(), items_done, items_total, human_bytes(static_cast<uint64_t>(rate)).c_str(),
               eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace g4::cli
