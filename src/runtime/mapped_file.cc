#include "runtime/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/regular_file.h"

namespace g4 {

Result<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  G4_ASSIGN_OR_RETURN(RegularFile file, RegularFile::open(path));
  const size_t size = static_cast<size_t>(file.size());
  if (size == 0) return MappedFile(name, nullptr, 0);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd(), 0);
  if (p == MAP_FAILED) return Status::io_error(name + ": cannot mmap: " + std::strerror(errno));
  return MappedFile(name, static_cast<const std::byte*>(p), size);  // the mapping outlives the descriptor
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::reset() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

void MappedFile::will_need(size_t offset, size_t len) const {
  if (!data_ || offset >= size_) return;
  long page = ::sysconf(_SC_PAGESIZE);
  size_t start = offset - offset % static_cast<size_t>(page);
  size_t end = std::min(size_, offset + len);
  ::madvise(const_cast<std::byte*>(data_) + start, end - start, MADV_WILLNEED);
}

void MappedFile::release(size_t offset, size_t len) const {
  if (!data_ || offset >= size_) return;
  long page = ::sysconf(_SC_PAGESIZE);
  // Only whole pages inside the range: neighbours may still be in use by another thread.
  size_t start = (offset + static_cast<size_t>(page) - 1) / static_cast<size_t>(page) * static_cast<size_t>(page);
  size_t end = std::min(size_, offset + len) / static_cast<size_t>(page) * static_cast<size_t>(page);
  if (end > start) ::madvise(const_cast<std::byte*>(data_) + start, end - start, MADV_DONTNEED);
}

}  // namespace g4
