#include "runtime/torch/zip_writer.h"

#include "runtime/output_dir.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

namespace g4::torch {
namespace {

constexpr uint64_t kZip32Max = 0xFFFFFFFFull;
constexpr size_t kChunk = 16u << 20;

void put(std::string& out, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) out.push_back(static_cast<char>(v >> (8 * k)));
}

}  // namespace

Result<ZipWriter> ZipWriter::create(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error(path.string() + ": cannot create: " + std::strerror(errno));
  return ZipWriter(fd, path.string(), 0, true);
}

ZipWriter::ZipWriter(ZipWriter&& o) noexcept
    : fd_(o.fd_), path_(std::move(o.path_)), base_(o.base_), owns_fd_(o.owns_fd_), offset_(o.offset_),
      entries_(std::move(o.entries_)) {
  o.fd_ = -1;
}

ZipWriter::~ZipWriter() {
  if (fd_ >= 0 && owns_fd_) ::close(fd_);
}

Status ZipWriter::write(const void* data, size_t n) {
  G4_RETURN_IF_ERROR(pwrite_all(fd_, data, n, base_ + offset_, path_));
  offset_ += n;
  return {};
}

Status ZipWriter::begin_record(const std::string& name, uint64_t size, Entry& e) {
  if (name.empty() || name.size() > 0xFFFF) return Status::invalid_argument("zip record name '" + name + "' is invalid");
  e.name = name;
  e.offset = offset_;
  e.size = size;
  // Local header: CRC and sizes zero (they follow in the descriptor); ZIP64 extra first when needed, then
  // "FB" padding so the data starts on a 64-byte boundary of this file.
  std::string zip64;
  if (size >= kZip32Max || offset_ >= kZip32Max) {
    put(zip64, 0x0001, 2);
    put(zip64, 16, 2);
    put(zip64, size, 8);
    put(zip64, size, 8);
  }
  const uint64_t start = offset_ + 30 + name.size() + zip64.size() + 4;
  const uint64_t pad = (64 - start % 64) % 64;
  std::string h;
  put(h, 0x04034b50, 4);
  put(h, zip64.empty() ? 0 : 45, 2);
  put(h, size > 0 ? 0x0808 : 0x0800, 2);  // bit 3: descriptor follows (none for empty records); bit 11: UTF-8
  put(h, 0, 2);                            // stored
  put(h, 0, 4);                            // time, date
  put(h, 0, 4);                            // crc (in descriptor)
  put(h, zip64.empty() ? 0 : kZip32Max, 4);
  put(h, zip64.empty() ? 0 : kZip32Max, 4);
  put(h, name.size(), 2);
  put(h, zip64.size() + 4 + pad, 2);
  h += name;
  h += zip64;
  put(h, 0x4246, 2);  // "FB"
  put(h, pad, 2);
  h.append(pad, 'Z');
  return write(h.data(), h.size());
}

Status ZipWriter::end_record(Entry& e) {
  if (e.size == 0) return {};
  std::string d;
  put(d, 0x08074b50, 4);
  put(d, e.crc, 4);
  const bool z64 = e.size >= kZip32Max || e.offset >= kZip32Max;
  put(d, e.size, z64 ? 8 : 4);
  put(d, e.size, z64 ? 8 : 4);
  G4_RETURN_IF_ERROR(write(d.data(), d.size()));
  entries_.push_back(e);
  return {};
}

Status ZipWriter::add(const std::string& name, std::span<const std::byte> data) {
  return add_streamed(name, data.size(), [&](uint64_t off, std::span<std::byte> out) {
    std::memcpy(out.data(), data.data() + off, out.size());
    return Status();
  });
}

Status ZipWriter::add_streamed(const std::string& name, uint64_t size,
                               const std::function<Status(uint64_t, std::span<std::byte>)>& produce) {
  Entry e;
  G4_RETURN_IF_ERROR(begin_record(name, size, e));
  std::vector<std::byte> buf(static_cast<size_t>(std::min<uint64_t>(size, kChunk)));
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t off = 0; off < size; off += buf.size()) {
    std::span<std::byte> out(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off)));
    G4_RETURN_IF_ERROR(produce(off, out).with_context(path_ + ": record '" + name + "'"));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size()));
    G4_RETURN_IF_ERROR(write(out.data(), out.size()));
  }
  e.crc = static_cast<uint32_t>(crc);
  if (size == 0) entries_.push_back(e);
  return end_record(e);
}

Status ZipWriter::finish() {
  const uint64_t cd_start = offset_;
  for (const Entry& e : entries_) {
    const bool z64 = e.size >= kZip32Max || e.offset >= kZip32Max;
    std::string c;
    put(c, 0x02014b50, 4);
    put(c, z64 ? 45 : 0, 2);  // made by
    put(c, z64 ? 45 : 0, 2);  // needed
    put(c, e.size > 0 ? 0x0808 : 0x0800, 2);
    put(c, 0, 2);
    put(c, 0, 4);
    put(c, e.crc, 4);
    put(c, z64 ? kZip32Max : e.size, 4);
    put(c, z64 ? kZip32Max : e.size, 4);
    put(c, e.name.size(), 2);
    put(c, z64 ? 28 : 0, 2);
    put(c, 0, 2);  // comment
    put(c, 0, 2);  // disk
    put(c, 0, 2);  // internal attributes
    put(c, 0, 4);  // external attributes
    put(c, z64 ? kZip32Max : e.offset, 4);
    c += e.name;
    if (z64) {
      put(c, 0x0001, 2);
      put(c, 24, 2);
      put(c, e.size, 8);
      put(c, e.size, 8);
      put(c, e.offset, 8);
    }
    G4_RETURN_IF_ERROR(write(c.data(), c.size()));
  }
  const uint64_t cd_size = offset_ - cd_start, z64_eocd = offset_, n = entries_.size();
  std::string end;
  put(end, 0x06064b50, 4);  // ZIP64 end of central directory
  put(end, 44, 8);
  put(end, 45, 2);
  put(end, 45, 2);
  put(end, 0, 4);
  put(end, 0, 4);
  put(end, n, 8);
  put(end, n, 8);
  put(end, cd_size, 8);
  put(end, cd_start, 8);
  put(end, 0x07064b50, 4);  // locator
  put(end, 0, 4);
  put(end, z64_eocd, 8);
  put(end, 1, 4);
  put(end, 0x06054b50, 4);  // classic end record
  put(end, 0, 2);
  put(end, 0, 2);
  put(end, std::min<uint64_t>(n, 0xFFFF), 2);
  put(end, std::min<uint64_t>(n, 0xFFFF), 2);
  put(end, std::min<uint64_t>(cd_size, kZip32Max), 4);
  put(end, std::min<uint64_t>(cd_start, kZip32Max), 4);
  put(end, 0, 2);
  G4_RETURN_IF_ERROR(write(end.data(), end.size()));
  if (!owns_fd_) return {};
  if (::fsync(fd_) != 0) return Status::io_error(path_ + ": fsync failed: " + std::strerror(errno));
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return Status::io_error(path_ + ": close failed: " + std::strerror(errno));
  return {};
}

}  // namespace g4::torch
