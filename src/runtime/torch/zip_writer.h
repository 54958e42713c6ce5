// The zip container of torch.save (megatron-checkpoint-format.md §2.1), streamed to a file: stored
// entries, each record's data 64-byte aligned through an "FB" extra field, CRC-32 (zlib) and sizes in a
// data descriptor after the data, ZIP64 fields when a size or offset needs them, a central directory,
// and the ZIP64 end records torch always writes followed by the classic end record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace g4::torch {

class ZipWriter {
 public:
  static Result<ZipWriter> create(const std::filesystem::path& path);
  // Appends one archive to an open file at `base` (a DCP .distcp item): zip offsets are relative to
  // `base`, and finish() neither fsyncs nor closes `fd`, which stays the caller's.
  static ZipWriter append(int fd, uint64_t base, std::string path) { return ZipWriter(fd, std::move(path), base, false); }
  ZipWriter(ZipWriter&& other) noexcept;
  ZipWriter(const ZipWriter&) = delete;
  ~ZipWriter();

  Status add(const std::string& name, std::span<const std::byte> data);
  Status add(const std::string& name, std::string_view data) {
    return add(name, std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
  }
  // Streams `size` bytes produced chunk by chunk: produce(offset, out) fills out.
  Status add_streamed(const std::string& name, uint64_t size,
                      const std::function<Status(uint64_t offset, std::span<std::byte> out)>& produce);
  // Writes the central directory and end records; a created file is then fsynced and closed.
  Status finish();
  uint64_t size() const { return offset_; }  // bytes written so far

 private:
  struct Entry {
    std::string name;
    uint64_t offset = 0, size = 0;
    uint32_t crc = 0;
  };
  ZipWriter(int fd, std::string path, uint64_t base, bool owns_fd)
      : fd_(fd), path_(std::move(path)), base_(base), owns_fd_(owns_fd) {}
  Status write(const void* data, size_t n);
  Status begin_record(const std::string& name, uint64_t size, Entry& e);
  Status end_record(Entry& e);

  int fd_ = -1;
  std::string path_;
  uint64_t base_ = 0;
  bool owns_fd_ = true;
  uint64_t offset_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace g4::torch
