#include "runtime/safetensors_set.h"

#include "runtime/text_file.h"

#include <set>

#include "runtime/json_parse.h"

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

bool SafetensorsSet::unreadable(std::string_view name) const {
  return all_unreadable_ || unreadable_.find(name) != unreadable_.end();
}

bool SafetensorsSet::unreadable_under(std::string_view prefix) const {
  auto it = unreadable_.lower_bound(prefix);
  return all_unreadable_ || (it != unreadable_.end() && std::string_view(*it).starts_with(prefix));
}

// Opens one file into the set. kStrict: any error is returned. kCollect: a file that cannot be opened or whose
// header cannot be read at all becomes a problem (and null); the problems and unreadable tensors of one that can
// are recorded.
Result<const SafetensorsFile*> SafetensorsSet::add_file(const fs::path& path, HeaderCheck check) {
  auto f = SafetensorsFile::open(path, check);
  if (!f.ok()) {
    Status s = f.status();
    if (sharded_ && s.code() == ErrorCode::kNotFound)
      s = Status::not_found(path.string() + ": shard named by " + kSafetensorsIndexFile + " is missing");
    if (check == HeaderCheck::kStrict) return s;
    problems_.push_back(s.message());
    return static_cast<const SafetensorsFile*>(nullptr);
  }
  for (const std::string& p : f->header().problems) problems_.push_back(p);
  for (const std::string& name : f->header().unreadable) unreadable_.insert(name);
  files_.push_back(std::make_unique<SafetensorsFile>(std::move(f).value()));
  return static_cast<const SafetensorsFile*>(files_.back().get());
}

// A malformed index entry: refused (kStrict), or an issue whose tensor is then unreadable (kCollect).
Status SafetensorsSet::index_problem(const std::string& name, Status problem, HeaderCheck check) {
  if (check == HeaderCheck::kStrict) return problem;
  issues_.push_back(problem.message());
  unreadable_.insert(name);
  return {};
}

Result<SafetensorsSet> SafetensorsSet::open_dir(const fs::path& dir, HeaderCheck check) {
  SafetensorsSet set;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::not_found(dir.string() + ": not a directory");
  const fs::path single = dir / kSafetensorsSingleFile;
  const fs::path index_path = dir / kSafetensorsIndexFile;

  if (fs::exists(single, ec)) {
    G4_ASSIGN_OR_RETURN(const SafetensorsFile* f, set.add_file(single, check));
    if (!f) set.all_unreadable_ = true;  // any expected tensor may have been in it
    if (f)
      for (const TensorInfo& t : f->tensors()) {
        set.tensors_.emplace(t.name, Entry{f, &t});
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
  G4_ASSIGN_OR_RETURN(const json index, parse_json(text, index_path.string()));
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return Status::corruption(index_path.string() + ": missing the 'weight_map' object");

  std::map<std::string, std::string> weight_map;
  std::set<std::string> shard_names;
  for (const auto& [name, file] : index["weight_map"].items()) {
    const std::string entry = index_path.string() + ": weight_map['" + name + "']";
    if (!file.is_string()) {
      G4_RETURN_IF_ERROR(set.index_problem(name, Status::corruption(entry + " is not a string"), check));
      continue;
    }
    std::string f = file.get<std::string>();
    if (!is_plain_file_name(f)) {
      G4_RETURN_IF_ERROR(set.index_problem(name, Status::corruption(entry + " = '" + f + "' is not a file in this directory"), check));
      continue;
    }
    weight_map[name] = f;
    shard_names.insert(f);
  }
  std::map<std::string, const SafetensorsFile*> by_shard;
  for (const std::string& shard : shard_names) {
    G4_ASSIGN_OR_RETURN(by_shard[shard], set.add_file(dir / shard, check));
  }
  for (const auto& [name, shard] : weight_map) {
    const SafetensorsFile* f = by_shard[shard];
    if (!f) {  // kCollect: the shard could not be read; its problem is listed
      set.unreadable_.insert(name);
      continue;
    }
    const TensorInfo* t = f->find(name);
    if (!t && set.unreadable_.count(name)) continue;  // kCollect: listed with its problem
    if (!t) {
      G4_RETURN_IF_ERROR(set.index_problem(
          name, Status::mismatch(f->path() + ": tensor '" + name + "' is listed in the index but not in this shard"), check));
      continue;
    }
    set.tensors_.emplace(name, Entry{f, t});
    set.total_bytes_ += t->nbytes();
  }
  for (const auto& f : set.files_)
    for (const TensorInfo& t : f->tensors()) {
      auto it = weight_map.find(t.name);
      if (it == weight_map.end())
        set.issues_.push_back(f->path() + ": tensor '" + t.name + "' is not listed in the index (transformers ignores it)");
      else if (!set.tensors_.count(t.name) || set.tensors_.at(t.name).file != f.get())
        set.issues_.push_back("duplicate tensor '" + t.name + "': in " + f->path() + " and in " + it->second +
                              " (the index picks " + it->second + ")");
    }
  if (index.contains("metadata") && index["metadata"].is_object() && index["metadata"].contains("total_size")) {
    const json& ts = index["metadata"]["total_size"];
    if (set.problems_.empty() && (!ts.is_number_unsigned() || ts.get<uint64_t>() != set.total_bytes_))
      set.issues_.push_back(std::string(kSafetensorsIndexFile) + ": metadata.total_size is " + ts.dump() +
                            " but the listed tensors hold " + std::to_string(set.total_bytes_) + " bytes");
  }
  return set;
}

}  // namespace g4
