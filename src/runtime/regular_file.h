// Opening a file for reading, the one way every reader of the tool does it (MappedFile, read_text_file). The
// open never blocks and only regular files are accepted: a FIFO, device, socket or directory in place of
// config.json, model.safetensors, .metadata or an input would otherwise hang the open or the read forever.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "runtime/status.h"

namespace g4 {

// A read-only descriptor of a regular file, closed on destruction. Move-only.
class RegularFile {
 public:
  // kNotFound when absent, kInvalidArgument for anything but a regular file ("is a FIFO"), kIOError otherwise.
  static Result<RegularFile> open(const std::filesystem::path& path);

  RegularFile(RegularFile&& other) noexcept : fd_(other.fd_), size_(other.size_) { other.fd_ = -1; }
  RegularFile& operator=(RegularFile&& other) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // at open time

 private:
  RegularFile(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace g4
