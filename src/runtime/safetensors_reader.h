// Strict safetensors parsing. The header is untrusted input: every length, offset and product is checked
// before use, and any violation is a kCorruption Status naming the file (and tensor), never a crash.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {str: str}}, then the data section; offsets are relative to the data section, must
// tile it exactly (no gaps, no overlaps) and match shape × dtype size.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/mapped_file.h"
#include "runtime/tensor_info.h"

namespace g4 {

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;  // the safetensors library's own limit
inline constexpr size_t kMaxTensorRank = 16;

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in data-offset order; only well-formed ones that lie inside the file
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section (8 + N)
  // Every structural problem, one line each naming the file (and tensor): malformed entries, unknown dtypes,
  // byte sizes that contradict shape × dtype, overlaps, gaps, bytes past the end, trailing bytes. The tensors
  // with a problem of their own are left out of `tensors` and named in `unreadable`.
  std::vector<std::string> problems;
  std::vector<std::string> unreadable;
};

// Validates the header of a whole safetensors file held in `file`, collect-all (inspect). `file_name` is used
// in messages. Only a header that cannot be read at all (file too short, length past the end or absurd, not a
// JSON object) is a kCorruption Status.
Result<SafetensorsHeader> read_safetensors_header(std::span<const std::byte> file, std::string_view file_name);
// Strict: as read_safetensors_header, but any problem is a kCorruption Status (its first problem).
Result<SafetensorsHeader> parse_safetensors(std::span<const std::byte> file, std::string_view file_name);

// How a reader treats structural problems: kStrict refuses the file (converters, the forward); kCollect keeps
// its readable tensors and lists the problems in header().problems (inspect).
enum class HeaderCheck { kStrict, kCollect };

// A mapped, validated safetensors file with zero-copy access to tensor bytes.
class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::filesystem::path& path, HeaderCheck check = HeaderCheck::kStrict);

  const std::string& path() const { return map_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(std::string_view name) const;
  std::span<const std::byte> data(const TensorInfo& t) const;
  void will_need(const TensorInfo& t) const { map_.will_need(header_.data_start + t.begin, t.nbytes()); }
  // Asks the kernel to read a sub-span of data(t) ahead in large requests (before a pass over it).
  void will_need_range(std::span<const std::byte> part) const {
    map_.will_need(static_cast<size_t>(part.data() - map_.bytes().data()), part.size());
  }
  // Drops the resident pages of a sub-span of data(t) after a streaming pass over it.
  void release_range(std::span<const std::byte> part) const {
    map_.release(static_cast<size_t>(part.data() - map_.bytes().data()), part.size());
  }

 private:
  SafetensorsFile(MappedFile map, SafetensorsHeader header);
  MappedFile map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace g4
