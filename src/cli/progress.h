// A one-line progress display on a terminal: bytes, tensors, rate and ETA, redrawn at most ~10 times a
// second. Silent when stderr is not a TTY or when the user asked for --quiet or --json.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/text_file.h"

namespace g4::cli {

class Progress {
 public:
  Progress(std::string label, bool enabled);
  ~Progress();  // ends the line if anything was drawn
  void update(uint64_t bytes_done, uint64_t bytes_total, size_t items_done, size_t items_total);

  static bool stderr_is_tty();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

using g4::human_bytes;
std::string human_seconds(double seconds);

}  // namespace g4::cli
