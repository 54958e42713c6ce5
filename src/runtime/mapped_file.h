// A read-only memory map of a whole file. Tensor data is read as zero-copy views into it; the map
// lives as long as the MappedFile, which is move-only. Thread-safe for concurrent reads.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "runtime/status.h"

namespace g4 {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Tells the kernel we will read [offset, offset+len) soon (readahead for streaming).
  void will_need(size_t offset, size_t len) const;
  // Drops our mapping's pages of [offset, offset+len) after a streaming pass, so resident memory stays
  // bounded by the tensors in flight; a later access simply reads the file again.
  void release(size_t offset, size_t len) const;

 private:
  MappedFile(std::string path, const std::byte* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}
  void reset();

  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace g4
