// All safetensors files of one HF checkpoint directory, seen as one name -> tensor map:
// model.safetensors, or model.safetensors.index.json and the shards it names.
// Corrupt files, a malformed index, or an index naming a missing shard fail open() with a Status.
// Softer inconsistencies (a tensor in two shards, a tensor the index does not list, a wrong
// metadata.total_size) are collected in issues(): inspect reports them, converters refuse them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/safetensors_reader.h"

namespace g4 {

class SafetensorsSet {
 public:
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };

  static Result<SafetensorsSet> open_dir(const std::filesystem::path& dir);

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::map<std::string, Entry, std::less<>>& tensors() const { return tensors_; }
  const Entry* find(std::string_view name) const;
  std::span<const std::byte> data(const Entry& e) const { return e.file->data(*e.info); }
  uint64_t total_bytes() const { return total_bytes_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::string>& issues() const { return issues_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // stable addresses for Entry
  std::map<std::string, Entry, std::less<>> tensors_;
  uint64_t total_bytes_ = 0;
  bool sharded_ = false;
  std::vector<std::string> issues_;
};

inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

}  // namespace g4
