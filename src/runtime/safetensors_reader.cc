#include "runtime/safetensors_reader.h"

#include <algorithm>
#include <cstring>

#include "runtime/json_parse.h"

namespace g4 {
namespace {

using json = nlohmann::json;

Result<uint64_t> as_u64(const json& v, std::string_view what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) return Status::corruption(std::string(what) + " is negative");
    return Status::corruption(std::string(what) + " is not an unsigned integer");
  }
  return v.get<uint64_t>();
}

// One header entry as far as it could be read. Its offsets take part in the tiling check even when the entry
// has another problem, so that one bad dtype is reported once, not again as a gap.
struct Entry {
  TensorInfo info;
  bool has_offsets = false;
  std::string problem;  // "tensor 'x': why"; empty when well-formed
};

Entry parse_tensor_entry(const std::string& name, const json& entry) {
  Entry e;
  e.info.name = name;
  TensorInfo& t = e.info;
  auto bad = [&](const std::string& why) {
    e.problem = "tensor '" + name + "': " + why;
    return e;
  };
  auto bad_status = [&](const Status& s) { return bad(s.message()); };
  if (!entry.is_object()) return bad("entry is not an object");
  if (entry.contains("data_offsets") && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2) {
    auto begin = as_u64(entry["data_offsets"][0], "data_offsets[0]");
    auto end = as_u64(entry["data_offsets"][1], "data_offsets[1]");
    if (!begin.ok()) return bad_status(begin.status());
    if (!end.ok()) return bad_status(end.status());
    t.begin = *begin;
    t.end = *end;
    if (t.end < t.begin) return bad("data_offsets end " + std::to_string(t.end) + " < begin " + std::to_string(t.begin));
    e.has_offsets = true;
  }
  for (const auto& [key, _] : entry.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") return bad("unexpected field '" + key + "'");
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) return bad("missing or non-string 'dtype'");
  if (!entry.contains("shape") || !entry["shape"].is_array()) return bad("missing or non-array 'shape'");
  if (!e.has_offsets) return bad("'data_offsets' must be an array of two integers");

  const std::string dtype = entry["dtype"].get<std::string>();
  auto dt = dtype_from_name(dtype);
  if (!dt) return bad("unknown dtype '" + dtype + "'");
  t.dtype = *dt;

  const json& shape = entry["shape"];
  if (shape.size() > kMaxTensorRank) return bad("rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(kMaxTensorRank));
  for (const json& d : shape) {
    auto dim = as_u64(d, "a shape dimension");
    if (!dim.ok()) return bad_status(dim.status());
    if (*dim > static_cast<uint64_t>(INT64_MAX)) return bad("shape dimension too large");
    t.shape.push_back(static_cast<int64_t>(*dim));
  }
  auto numel = checked_numel(t.shape);
  if (!numel || *numel > UINT64_MAX / dtype_size(t.dtype)) return bad("shape " + shape_to_string(t.shape) + " overflows");
  uint64_t expected = *numel * dtype_size(t.dtype);
  if (expected != t.nbytes())
    return bad("byte size " + std::to_string(t.nbytes()) + " does not match shape " + shape_to_string(t.shape) + " × " +
               std::string(dtype_name(t.dtype)) + " = " + std::to_string(expected));
  return e;
}

// Offsets must tile the data section exactly: sorted by begin, each tensor starts where the last ended. Every
// violation is a problem; a tensor whose bytes run past the data section also becomes unreadable.
void check_tiling(std::vector<Entry>& entries, uint64_t data_len, std::vector<std::string>& problems) {
  std::vector<Entry*> placed;
  for (Entry& e : entries)
    if (e.has_offsets) placed.push_back(&e);
  std::sort(placed.begin(), placed.end(), [](const Entry* a, const Entry* b) {
    return a->info.begin != b->info.begin ? a->info.begin < b->info.begin : a->info.end < b->info.end;
  });
  uint64_t cursor = 0;
  const Entry* last = nullptr;  // the entry that reaches furthest so far
  for (Entry* e : placed) {
    const TensorInfo& t = e->info;
    const std::string bytes = "bytes [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ")";
    if (t.begin < cursor)
      problems.push_back("tensor '" + t.name + "': " + bytes + " overlap tensor '" + (last ? last->info.name : "") + "'");
    else if (t.begin > cursor)
      problems.push_back("tensor '" + t.name + "': gap of " + std::to_string(t.begin - cursor) + " bytes before its data");
    if (t.end > data_len) {
      const std::string why = bytes + " run past the " + std::to_string(data_len) + "-byte data section (truncated?)";
      problems.push_back("tensor '" + t.name + "': " + why);
      if (e->problem.empty()) e->problem = why;
    }
    if (t.end > cursor) cursor = t.end, last = e;
  }
  if (cursor < data_len)
    problems.push_back("data section is " + std::to_string(data_len) + " bytes but tensors cover " + std::to_string(cursor) +
                       " (trailing bytes)");
}

}  // namespace

Result<SafetensorsHeader> read_safetensors_header(std::span<const std::byte> file, std::string_view file_name) {
  const std::string where(file_name);
  auto fail = [&](const std::string& why) { return Status::corruption(where + ": " + why); };
  if (file.size() < 8) return fail("file is " + std::to_string(file.size()) + " bytes, too short for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > kMaxSafetensorsHeaderBytes)
    return fail("header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit");
  if (header_len > file.size() - 8)
    return fail("header length " + std::to_string(header_len) + " runs past the end of the " +
                std::to_string(file.size()) + "-byte file (truncated?)");
  std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, header_len);
  if (text.empty() || text.front() != '{') return fail("header does not start with '{'");

  G4_ASSIGN_OR_RETURN(const json j, parse_json(text, where + ": header", {.reject_duplicate_keys = true}));
  if (!j.is_object()) return fail("header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  std::vector<std::string> problems;
  std::vector<Entry> entries;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        problems.push_back("__metadata__ is not an object");
        continue;
      }
      for (const auto& [k, v] : entry.items()) {
        if (v.is_string()) h.metadata[k] = v.get<std::string>();
        else problems.push_back("__metadata__ value of '" + k + "' is not a string");
      }
      continue;
    }
    entries.push_back(parse_tensor_entry(name, entry));
    if (name.empty() && entries.back().problem.empty()) entries.back().problem = "a tensor has an empty name";
    if (!entries.back().problem.empty()) problems.push_back(entries.back().problem);
  }
  check_tiling(entries, file.size() - h.data_start, problems);
  for (Entry& e : entries) {
    if (e.problem.empty()) h.tensors.push_back(std::move(e.info));
    else h.unreadable.push_back(e.info.name);
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin; });
  for (const std::string& p : problems) h.problems.push_back(where + ": " + p);
  return h;
}

Result<SafetensorsHeader> parse_safetensors(std::span<const std::byte> file, std::string_view file_name) {
  G4_ASSIGN_OR_RETURN(SafetensorsHeader h, read_safetensors_header(file, file_name));
  if (h.problems.empty()) return h;
  std::string more = h.problems.size() > 1 ? " (and " + std::to_string(h.problems.size() - 1) + " more problems)" : "";
  return Status::corruption(h.problems.front() + more);
}

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path, HeaderCheck check) {
  G4_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  G4_ASSIGN_OR_RETURN(SafetensorsHeader header, check == HeaderCheck::kStrict ? parse_safetensors(map.bytes(), map.path())
                                                                                : read_safetensors_header(map.bytes(), map.path()));
  return SafetensorsFile(std::move(map), std::move(header));
}

SafetensorsFile::SafetensorsFile(MappedFile map, SafetensorsHeader header)
    : map_(std::move(map)), header_(std::move(header)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) by_name_.emplace(header_.tensors[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& t) const {
  return map_.bytes().subspan(header_.data_start + t.begin, t.nbytes());
}

}  // namespace g4
