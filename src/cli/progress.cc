#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace g4::cli {

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
  if (bytes_total == 0) {  // work counted in items only (forward: layers)
    double item_rate = elapsed > 0 ? static_cast<double>(items_done) / elapsed : 0;
    std::string item_eta = item_rate > 0 && items_total > items_done
                               ? human_seconds(static_cast<double>(items_total - items_done) / item_rate) : "-";
    std::fprintf(stderr, "\r\033[K%s  %zu/%zu layers  ETA %s", label_.c_str(), items_done, items_total, item_eta.c_str());
  } else {
    std::fprintf(stderr, "\r\033[K%s  %s / %s  %zu/%zu tensors  %s/s  ETA %s", label_.c_str(), human_bytes(bytes_done).c_str(),
                 human_bytes(bytes_total).c_str(), items_done, items_total, human_bytes(static_cast<uint64_t>(rate)).c_str(),
                 eta.c_str());
  }
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace g4::cli
