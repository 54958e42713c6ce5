#include "runtime/safetensors_reader.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace g4 {
namespace {

using json = nlohmann::json;

// Parses JSON and rejects duplicate keys in any object (nlohmann would silently keep the last one,
// which would let a hostile header hide a tensor).
Result<json> parse_json_strict(std::string_view text, std::string_view what) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case json::parse_event_t::object_end: if (!open_objects.empty()) open_objects.pop_back(); break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default: break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);  // drop nlohmann's "[json.exception...]"
    return Status::corruption(std::string(what) + " is not valid JSON: " + msg);
  }
  if (!duplicate.empty()) return Status::corruption(std::string(what) + " has a duplicate key '" + duplicate + "'");
  return j;
}

Result<uint64_t> as_u64(const json& v, std::string_view what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) return Status::corruption(std::string(what) + " is negative");
    return Status::corruption(std::string(what) + " is not an unsigned integer");
  }
  return v.get<uint64_t>();
}

Result<TensorInfo> parse_tensor_entry(const std::string& name, const json& entry) {
  auto bad = [&](const std::string& why) { return Status::corruption("tensor '" + name + "': " + why); };
  if (!entry.is_object()) return bad("entry is not an object");
  for (const auto& [key, _] : entry.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") return bad("unexpected field '" + key + "'");
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) return bad("missing or non-string 'dtype'");
  if (!entry.contains("shape") || !entry["shape"].is_array()) return bad("missing or non-array 'shape'");
  if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2)
    return bad("'data_offsets' must be an array of two integers");

  TensorInfo t;
  t.name = name;
  const std::string dtype = entry["dtype"].get<std::string>();
  auto dt = dtype_from_name(dtype);
  if (!dt) return bad("unknown dtype '" + dtype + "'");
  t.dtype = *dt;

  const json& shape = entry["shape"];
  if (shape.size() > kMaxTensorRank) return bad("rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(kMaxTensorRank));
  for (const json& d : shape) {
    auto dim = as_u64(d, "a shape dimension");
    if (!dim.ok()) return dim.status().with_context("tensor '" + name + "'");
    if (*dim > static_cast<uint64_t>(INT64_MAX)) return bad("shape dimension too large");
    t.shape.push_back(static_cast<int64_t>(*dim));
  }
  auto begin = as_u64(entry["data_offsets"][0], "data_offsets[0]");
  if (!begin.ok()) return begin.status().with_context("tensor '" + name + "'");
  auto end = as_u64(entry["data_offsets"][1], "data_offsets[1]");
  if (!end.ok()) return end.status().with_context("tensor '" + name + "'");
  t.begin = *begin;
  t.end = *end;
  if (t.end < t.begin) return bad("data_offsets end " + std::to_string(t.end) + " < begin " + std::to_string(t.begin));

  auto numel = checked_numel(t.shape);
  if (!numel || *numel > UINT64_MAX / dtype_size(t.dtype)) return bad("shape " + shape_to_string(t.shape) + " overflows");
  uint64_t expected = *numel * dtype_size(t.dtype);
  if (expected != t.nbytes())
    return bad("byte size " + std::to_string(t.nbytes()) + " does not match shape " + shape_to_string(t.shape) +
               " × " + std::string(dtype_name(t.dtype)) + " = " + std::to_string(expected));
  return t;
}

}  // namespace

Result<SafetensorsHeader> parse_safetensors(std::span<const std::byte> file, std::string_view file_name) {
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

  auto parsed = parse_json_strict(text, "header");
  if (!parsed.ok()) return parsed.status().with_context(where);
  const json& j = *parsed;
  if (!j.is_object()) return fail("header is not a JSON object");

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return fail("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return fail("__metadata__ value of '" + k + "' is not a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (name.empty()) return fail("a tensor has an empty name");
    auto t = parse_tensor_entry(name, entry);
    if (!t.ok()) return t.status().with_context(where);
    h.tensors.push_back(std::move(t).value());
  }

  // Offsets must tile the data section exactly: sorted by begin, each tensor starts where the last ended.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_len = file.size() - h.data_start;
  uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : h.tensors) {
    if (t.begin < cursor)
      return fail("tensor '" + t.name + "': bytes [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                  ") overlap tensor '" + (prev ? prev->name : "") + "'");
    if (t.begin > cursor)
      return fail("tensor '" + t.name + "': gap of " + std::to_string(t.begin - cursor) + " bytes before its data");
    if (t.end > data_len)
      return fail("tensor '" + t.name + "': bytes [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                  ") run past the " + std::to_string(data_len) + "-byte data section (truncated?)");
    cursor = t.end;
    prev = &t;
  }
  if (cursor != data_len)
    return fail("data section is " + std::to_string(data_len) + " bytes but tensors cover " + std::to_string(cursor) +
                " (trailing bytes)");
  return h;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  G4_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  G4_ASSIGN_OR_RETURN(SafetensorsHeader header, parse_safetensors(map.bytes(), map.path()));
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
