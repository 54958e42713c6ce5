// Small helpers shared by every reader of small text files (configs, indexes, inputs) and by reports.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "runtime/status.h"

namespace g4 {

// The whole file as a string; kNotFound if absent, kInvalidArgument if larger than `max_bytes` or not a
// regular file (RegularFile::open: a FIFO never blocks the read).
Result<std::string> read_text_file(const std::filesystem::path& path, size_t max_bytes);

// "1.50 GiB", "687.71 KiB", "12 B".
std::string human_bytes(uint64_t bytes);

}  // namespace g4
