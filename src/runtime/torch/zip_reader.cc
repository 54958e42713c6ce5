#include "runtime/torch/zip_reader.h"

#include <zlib.h>

namespace g4::torch {
namespace {

uint64_t le(std::span<const std::byte> b, size_t at, int n) {
  uint64_t v = 0;
  for (int k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[at + k])) << (8 * k);
  return v;
}

}  // namespace

const std::span<const std::byte>* ZipArchive::find(std::string_view name) const {
  auto it = records.find(prefix + "/" + std::string(name));
  return it == records.end() ? nullptr : &it->second;
}

Result<ZipArchive> read_zip(std::span<const std::byte> b, std::string_view where_view, bool verify_crc) {
  const std::string where(where_view);
  auto fail = [&](const std::string& why) { return Status::corruption(where + ": zip " + why); };
  const size_t n = b.size();
  if (n < 22) return fail("archive is too short for an end record");
  // The classic end record sits at the end, before a comment of up to 65535 bytes.
  size_t eocd = std::string::npos;
  for (size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 0xFFFF;)
    if (le(b, i, 4) == 0x06054b50) { eocd = i; break; }
  if (eocd == std::string::npos) return fail("end-of-central-directory record not found (not a zip, or truncated)");
  uint64_t count = le(b, eocd + 10, 2), cd_size = le(b, eocd + 12, 4), cd_start = le(b, eocd + 16, 4);
  if (eocd >= 20 && le(b, eocd - 20, 4) == 0x07064b50) {  // ZIP64 locator
    uint64_t z = le(b, eocd - 20 + 8, 8);
    if (n < 56 || z > n - 56 || le(b, z, 4) != 0x06064b50) return fail("ZIP64 end record is missing or out of bounds");
    count = le(b, z + 32, 8);
    cd_size = le(b, z + 40, 8);
    cd_start = le(b, z + 48, 8);
  }
  if (count > kMaxZipEntries) return fail(std::to_string(count) + " entries exceed the limit");
  if (cd_start > n || cd_size > n - cd_start) return fail("central directory lies outside the file");

  ZipArchive a;
  size_t p = cd_start;
  for (uint64_t k = 0; k < count; ++k) {
    if (p > cd_start + cd_size || cd_start + cd_size - p < 46 || le(b, p, 4) != 0x02014b50)
      return fail("central directory entry " + std::to_string(k) + " is malformed");
    const uint64_t method = le(b, p + 10, 2), crc = le(b, p + 16, 4);
    uint64_t comp = le(b, p + 20, 4), size = le(b, p + 24, 4), local = le(b, p + 42, 4);
    const size_t name_len = le(b, p + 28, 2), extra_len = le(b, p + 30, 2), comment_len = le(b, p + 32, 2);
    if (cd_start + cd_size - p - 46 < name_len + extra_len + comment_len) return fail("central directory entry runs past its end");
    std::string name(reinterpret_cast<const char*>(b.data()) + p + 46, name_len);
    // ZIP64 extra: 8-byte values replace the 32-bit fields that are 0xFFFFFFFF, in order size, comp, offset.
    for (size_t e = p + 46 + name_len; e + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = le(b, e, 2), len = le(b, e + 2, 2);
      if (e + 4 + len > p + 46 + name_len + extra_len) return fail("entry '" + name + "' has a malformed extra field");
      if (id == 0x0001) {
        size_t q = e + 4, end = e + 4 + len;
        auto next = [&](uint64_t& field) { if (field == 0xFFFFFFFF && q + 8 <= end) field = le(b, q, 8), q += 8; };
        next(size);
        next(comp);
        next(local);
      }
      e += 4 + len;
    }
    if (method != 0) return Status::not_supported(where + ": zip entry '" + name + "' is compressed (method " + std::to_string(method) + ")");
    if (comp != size) return fail("entry '" + name + "' has different stored and real sizes");
    if (local > n || n - local < 30 || le(b, local, 4) != 0x04034b50) return fail("entry '" + name + "' has no local header at its offset");
    const uint64_t data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
    if (data > n || size > n - data) return fail("entry '" + name + "' data lies outside the file (truncated?)");
    auto span = b.subspan(data, size);
    if (verify_crc && crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(span.data()), static_cast<uInt>(span.size())) != crc)
      return fail("entry '" + name + "' fails its CRC-32 check");
    if (k == 0) {
      auto slash = name.find('/');
      if (slash == std::string::npos) return fail("first entry '" + name + "' has no archive prefix");
      a.prefix = name.substr(0, slash);
    }
    if (!a.records.emplace(name, span).second) return fail("entry '" + name + "' appears twice");
    p += 46 + name_len + extra_len + comment_len;
  }
  return a;
}

}  // namespace g4::torch
