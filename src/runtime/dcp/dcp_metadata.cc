#include "runtime/dcp/dcp_metadata.h"

#include "runtime/dcp/chunk_cover.h"
#include "runtime/torch/pickle_reader.h"

namespace g4::dcp {
namespace fs = std::filesystem;
using torch::PyPtr;
using torch::PyValue;
using K = PyValue::Kind;

namespace {

// The BUILD state of a dataclass object: its __dict__ (or, for classes with __getstate__, whatever that returned).
const PyValue* state_of(const PyValue& v) {
  if (v.is(K::kObject)) return v.items[2].get();
  return nullptr;
}

std::string class_of(const PyValue& v) { return v.is(K::kObject) ? v.items[0]->global_name() : ""; }

// torch.Size((a, b, ...)) -> {a, b, ...}
Result<std::vector<int64_t>> size_of(const PyValue& v, const std::string& where) {
  const PyValue* t = &v;
  if (v.is(K::kCall) && v.items[0]->global_name() == "torch.Size" && !v.items[1]->items.empty()) t = v.items[1]->items[0].get();
  if (!t->is(K::kTuple) && !t->is(K::kList)) return Status::corruption(where + ": expected a torch.Size");
  std::vector<int64_t> out;
  for (const auto& item : t->items) {
    if (!item->is(K::kInt) || item->i < 0) return Status::corruption(where + ": torch.Size holds a non-size");
    out.push_back(item->i);
  }
  return out;
}

Result<DType> dtype_of(const PyValue& g, const std::string& where) {
  static const std::map<std::string, DType> kDtypes = {
      {"torch.float32", DType::kF32}, {"torch.float", DType::kF32}, {"torch.bfloat16", DType::kBF16},
      {"torch.float16", DType::kF16}, {"torch.half", DType::kF16}, {"torch.float64", DType::kF64},
      {"torch.int64", DType::kI64},   {"torch.int32", DType::kI32}, {"torch.int16", DType::kI16},
      {"torch.int8", DType::kI8},     {"torch.uint8", DType::kU8},  {"torch.bool", DType::kBool}};
  if (!g.is(K::kGlobal)) return Status::corruption(where + ": dtype is not a torch dtype");
  auto it = kDtypes.find(g.global_name());
  if (it == kDtypes.end()) return Status::not_supported(where + ": dtype '" + g.global_name() + "'");
  return it->second;
}

Result<StorageLocation> location_of(const PyValue& info, const std::string& where) {
  const PyValue* s = state_of(info);
  if (!s || !s->is(K::kDict)) return Status::corruption(where + ": _StorageInfo without state");
  PyPtr path = s->get("relative_path"), offset = s->get("offset"), length = s->get("length");
  if (!path || !path->is(K::kStr) || !offset || !offset->is(K::kInt) || !length || !length->is(K::kInt) || offset->i < 0 || length->i < 0)
    return Status::corruption(where + ": _StorageInfo lacks relative_path, offset or length");
  if (path->s.find('/') != std::string::npos || path->s == ".." || path->s.empty())
    return Status::corruption(where + ": storage path '" + path->s + "' is not a file in the checkpoint directory");
  return StorageLocation{path->s, static_cast<uint64_t>(offset->i), static_cast<uint64_t>(length->i)};
}

}  // namespace

Result<Metadata> read_metadata(const fs::path& dir) {
  G4_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(dir / ".metadata"));
  return parse_metadata(map.bytes(), (dir / ".metadata").string());
}

Result<Metadata> parse_metadata(std::span<const std::byte> bytes, const std::string& file) {
  // Globals are kept as data: .metadata names torch's own classes and, in checkpoints written by Megatron or
  // other tools, classes we do not know; the reader never calls anything. One that would run code under a
  // Python unpickler (os.system, builtins.eval, ...) is no checkpoint's, and is refused.
  torch::PickleOptions options{[](const std::string& g) { return !torch::names_code_execution(g); }};
  G4_ASSIGN_OR_RETURN(PyPtr root, torch::pickle_loads(bytes, options, file));
  const PyValue* state = state_of(*root);
  if (!state || !state->is(K::kDict)) return Status::corruption(file + ": not a DCP Metadata object");
  PyPtr sdm = state->get("state_dict_metadata"), storage = state->get("storage_data");
  if (!sdm || !sdm->is(K::kDict) || !storage || !storage->is(K::kDict))
    return Status::corruption(file + ": Metadata lacks state_dict_metadata or storage_data");

  // storage_data: MetadataIndex(fqn, offset, index) -> _StorageInfo
  std::map<std::pair<std::string, std::vector<int64_t>>, StorageLocation> locations;
  Metadata md;
  for (size_t k = 0; k + 1 < storage->items.size(); k += 2) {
    const PyValue* index = state_of(*storage->items[k]);
    if (!index || !index->is(K::kDict)) return Status::corruption(file + ": storage_data key is not a MetadataIndex");
    PyPtr fqn = index->get("fqn"), offset = index->get("offset");
    if (!fqn || !fqn->is(K::kStr)) return Status::corruption(file + ": MetadataIndex without fqn");
    G4_ASSIGN_OR_RETURN(StorageLocation where, location_of(*storage->items[k + 1], file + ": '" + fqn->s + "'"));
    std::vector<int64_t> chunk_offset;
    if (offset && !offset->is(K::kNone)) {
      G4_ASSIGN_OR_RETURN(chunk_offset, size_of(*offset, file + ": '" + fqn->s + "' offset"));
    }
    locations[{fqn->s, chunk_offset}] = where;
  }
  for (size_t k = 0; k + 1 < sdm->items.size(); k += 2) {
    if (!sdm->items[k]->is(K::kStr)) return Status::corruption(file + ": state_dict_metadata key is not a string");
    const std::string fqn = sdm->items[k]->s, where = file + ": '" + fqn + "'";
    const PyValue& entry = *sdm->items[k + 1];
    const std::string cls = class_of(entry);
    if (cls == "torch.distributed.checkpoint.metadata.BytesStorageMetadata") {
      auto it = locations.find({fqn, {}});
      if (it == locations.end()) return Status::corruption(where + ": byte item has no storage entry");
      md.byte_items[fqn] = it->second;
      continue;
    }
    if (cls != "torch.distributed.checkpoint.metadata.TensorStorageMetadata")
      return Status::not_supported(where + ": entry of class '" + cls + "'");
    const PyValue* s = state_of(entry);
    if (!s || !s->is(K::kDict)) return Status::corruption(where + ": TensorStorageMetadata without state");
    PyPtr properties = s->get("properties"), size = s->get("size"), chunks = s->get("chunks");
    if (!properties || !size || !chunks || !chunks->is(K::kList)) return Status::corruption(where + ": incomplete TensorStorageMetadata");
    const PyValue* ps = state_of(*properties);  // TensorProperties.__getstate__: (dtype, layout, requires_grad, memory_format, pin_memory)
    if (!ps || !ps->is(K::kTuple) || ps->items.empty()) return Status::corruption(where + ": TensorProperties without state");
    TensorEntry t;
    t.fqn = fqn;
    G4_ASSIGN_OR_RETURN(t.dtype, dtype_of(*ps->items[0], where));
    G4_ASSIGN_OR_RETURN(t.shape, size_of(*size, where + " size"));
    for (const auto& chunk : chunks->items) {
      const PyValue* cs = state_of(*chunk);
      if (!cs || !cs->is(K::kDict) || !cs->get("offsets") || !cs->get("sizes")) return Status::corruption(where + ": malformed chunk");
      TensorChunk c;
      G4_ASSIGN_OR_RETURN(c.offsets, size_of(*cs->get("offsets"), where + " chunk offsets"));
      G4_ASSIGN_OR_RETURN(c.sizes, size_of(*cs->get("sizes"), where + " chunk sizes"));
      // A chunk that cannot belong to the tensor is left out and recorded, like overlaps and holes below:
      // readers refuse the tensor, inspect lists it, and every kept chunk is well-formed.
      std::string bad;
      if (c.offsets.size() != t.shape.size() || c.sizes.size() != t.shape.size()) bad = "chunk rank differs from the tensor's";
      for (size_t d = 0; bad.empty() && d < t.shape.size(); ++d)  // no sum that could overflow: offset <= dim, size <= dim - offset
        if (c.offsets[d] > t.shape[d] || c.sizes[d] > t.shape[d] - c.offsets[d])
          bad = "chunk " + shape_to_string(c.sizes) + " at " + shape_to_string(c.offsets) + " lies outside the tensor's " +
                shape_to_string(t.shape);
      auto it = locations.find({fqn, c.offsets});
      if (bad.empty() && it == locations.end()) bad = "a chunk has no storage entry";
      if (!bad.empty()) {
        if (t.chunk_problem.empty()) t.chunk_problem = where + ": " + bad;
        continue;
      }
      c.where = it->second;
      t.chunks.push_back(std::move(c));
    }
    // Overlaps and holes are recorded, not fatal: readers refuse the tensor, inspect lists every one.
    std::vector<std::vector<int64_t>> offsets;
    std::vector<Shape> sizes;
    for (const TensorChunk& c : t.chunks) offsets.push_back(c.offsets), sizes.push_back(c.sizes);
    if (Status cover = check_chunk_cover(where, t.shape, offsets, sizes); !cover.ok() && t.chunk_problem.empty())
      t.chunk_problem = cover.message();
    md.tensors[fqn] = std::move(t);
  }
  return md;
}

Result<torch::TensorView> read_chunk(const fs::path& dir, const TensorChunk& chunk, std::map<std::string, MappedFile>& maps,
                                     std::string_view fqn) {
  auto it = maps.find(chunk.where.relative_path);
  if (it == maps.end()) {
    G4_ASSIGN_OR_RETURN(MappedFile m, MappedFile::open(dir / chunk.where.relative_path));
    it = maps.emplace(chunk.where.relative_path, std::move(m)).first;
  }
  const MappedFile& m = it->second;
  const std::string where = m.path() + ": '" + std::string(fqn) + "'";
  if (chunk.where.offset > m.size() || chunk.where.length > m.size() - chunk.where.offset)
    return Status::corruption(where + ": blob lies outside the file (truncated?)");
  auto blob = m.bytes().subspan(chunk.where.offset, chunk.where.length);
  G4_ASSIGN_OR_RETURN(auto parsed, torch::parse_torch_bytes(blob, where));
  G4_ASSIGN_OR_RETURN(torch::TensorView v, torch::tensor_view(parsed.first, *parsed.second, where));
  if (v.shape != chunk.sizes) return Status::corruption(where + ": blob shape " + shape_to_string(v.shape) + " differs from the chunk's");
  return v;
}

}  // namespace g4::dcp
