// All safetensors files of one HF checkpoint directory, seen as one name -> tensor map:
// model.safetensors, or model.safetensors.index.json and the shards it names.
// With HeaderCheck::kStrict, corrupt files, a malformed index, or an index naming a missing shard fail open()
// with a Status. With kCollect (inspect), only a missing directory or an index that is not a JSON object with a
// weight_map does: every other problem (a file that cannot be opened or whose header cannot be read, a missing
// shard, bad tensor entries, offsets past the end) is listed in problems(), a bad index entry in issues(), and
// the tensors they make unreadable are left out. Softer inconsistencies (a tensor in two
// shards, a tensor the index does not list, a wrong metadata.total_size) are collected in issues(): inspect
// reports them, converters refuse them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <set>
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

  static Result<SafetensorsSet> open_dir(const std::filesystem::path& dir, HeaderCheck check = HeaderCheck::kStrict);

  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::map<std::string, Entry, std::less<>>& tensors() const { return tensors_; }
  const Entry* find(std::string_view name) const;
  std::span<const std::byte> data(const Entry& e) const { return e.file->data(*e.info); }
  uint64_t total_bytes() const { return total_bytes_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::string>& issues() const { return issues_; }
  // kCollect only: structural problems of the files, one line each naming the file (and tensor).
  const std::vector<std::string>& problems() const { return problems_; }
  // kCollect only: whether a tensor of this name may exist but could not be read (its entry, or its whole
  // file, has a problem in problems()), so that it is not also reported as missing.
  bool unreadable(std::string_view name) const;
  // Whether any such tensor's name starts with `prefix`.
  bool unreadable_under(std::string_view prefix) const;

 private:
  Result<const SafetensorsFile*> add_file(const std::filesystem::path& path, HeaderCheck check);
  Status index_problem(const std::string& name, Status problem, HeaderCheck check);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // stable addresses for Entry
  std::map<std::string, Entry, std::less<>> tensors_;
  uint64_t total_bytes_ = 0;
  bool sharded_ = false;
  std::vector<std::string> issues_;
  std::vector<std::string> problems_;
  std::set<std::string, std::less<>> unreadable_;
  bool all_unreadable_ = false;  // the single model.safetensors could not be read
};

inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

}  // namespace g4
