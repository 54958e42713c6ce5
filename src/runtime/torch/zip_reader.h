// Reads the stored (uncompressed) zip archives torch.save writes, from bytes already in memory (an mmap):
// classic or ZIP64 end records, the central directory, and each local header to find the data. Every
// offset and length is checked against the buffer; compressed entries are refused; CRCs can be verified.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>

#include "runtime/status.h"

namespace g4::torch {

inline constexpr size_t kMaxZipEntries = 1'000'000;

struct ZipArchive {
  std::map<std::string, std::span<const std::byte>, std::less<>> records;  // full names ("archive/data.pkl")
  std::string prefix;  // text before the first '/' of the first entry, as torch takes it

  // The record "<prefix>/<name>", or nullptr.
  const std::span<const std::byte>* find(std::string_view name) const;
};

Result<ZipArchive> read_zip(std::span<const std::byte> bytes, std::string_view where, bool verify_crc = false);

}  // namespace g4::torch
