#include "runtime/safetensors_set.h"

#include "runtime/text_file.h"

#include <set>

#include <nlohmann/json.hpp>

namespace g4 {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A shard name from the index must be a plain file in the same directory: an index is untrusted input
// and must not make us open "../../etc/passwd".
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
         name != "." && name != "..";
}

}  // namespace

const SafetensorsSet::Entry* SafetensorsSet::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<SafetensorsSet> SafetensorsSet::open_dir(const fs::path& dir) {
  SafetensorsSet set;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::not_found(dir.string() + ": not a directory");
  const fs::path single = dir / kSafetensorsSingleFile;
  const fs::path index_path = dir / kSafetensorsIndexFile;

  if (fs::exists(single, ec)) {
    G4_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(single));
    set.files_.push_back(std::make_unique<SafetensorsFile>(std::move(f)));
    for (const TensorInfo& t : set.files_.back()->tensors()) {
      set.tensors_.emplace(t.name, Entry{set.files_.back().get(), &t});
      set.total_bytes_ += t.nbytes();
    }
    if (fs::exists(index_path, ec))
      set.issues_.push_back(std::string(kSafetensorsIndexFile) + " is present beside " + kSafetensorsSingleFile +
                            "; transformers reads " + kSafetensorsSingleFile + " and ignores the index");
    return set;
  }
  if (!fs::exists(index_path, ec))
    return Status::not_found(dir.string() + ": no " + kSafetensorsSingleFile + " or " + kSafetensorsIndexFile);

  set.sharded_ = true;
  G4_ASSIGN_OR_RETURN(std::string text, read_text_file(index_path, 256u << 20));
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    return Status::corruption(index_path.string() + ": not valid JSON");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return Status::corruption(index_path.string() + ": missing the 'weight_map' object");

  std::map<std::string, std::string> weight_map;
  std::set<std::string> shard_names;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) return Status::corruption(index_path.string() + ": weight_map['" + name + "'] is not a string");
    std::string f = file.get<std::string>();
    if (!is_plain_file_name(f))
      return Status::corruption(index_path.string() + ": weight_map['" + name + "'] = '" + f + "' is not a file in this directory");
    weight_map[name] = f;
    shard_names.insert(f);
  }
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const std::string& shard : shard_names) {
    auto f = SafetensorsFile::open(dir / shard);
    if (!f.ok()) {
      if (f.status().code() == ErrorCode::kNotFound)
        return Status::not_found((dir / shard).string() + ": shard named by " + kSafetensorsIndexFile + " is missing");
      return f.status();
    }
    set.files_.push_back(std::make_unique<SafetensorsFile>(std::move(f).value()));
    by_shard[shard] = set.files_.back().get();
  }
  for (const auto& [name, shard] : weight_map) {
    const SafetensorsFile* f = by_shard[shard];
    const TensorInfo* t = f->find(name);
    if (!t) return Status::mismatch(f->path() + ": tensor '" + name + "' is listed in the index but not in this shard");
    set.tensors_.emplace(name, Entry{f, t});
    set.total_bytes_ += t->nbytes();
  }
  for (const auto& f : set.files_)
    for (const TensorInfo& t : f->tensors()) {
      auto it = weight_map.find(t.name);
      if (it == weight_map.end())
        set.issues_.push_back(f->path() + ": tensor '" + t.name + "' is not listed in the index (transformers ignores it)");
      else if (set.tensors_.at(t.name).file != f.get())
        set.issues_.push_back("duplicate tensor '" + t.name + "': in " + f->path() + " and in " + it->second +
                              " (the index picks " + it->second + ")");
    }
  if (index.contains("metadata") && index["metadata"].is_object() && index["metadata"].contains("total_size")) {
    const json& ts = index["metadata"]["total_size"];
    if (!ts.is_number_unsigned() || ts.get<uint64_t>() != set.total_bytes_)
      set.issues_.push_back(std::string(kSafetensorsIndexFile) + ": metadata.total_size is " + ts.dump() +
                            " but the listed tensors hold " + std::to_string(set.total_bytes_) + " bytes");
  }
  return set;
}

}  // namespace g4
