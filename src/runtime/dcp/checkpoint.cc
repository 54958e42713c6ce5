#include "runtime/dcp/checkpoint.h"

#include <algorithm>
#include <cstring>

#include "runtime/text_file.h"

namespace g4::dcp {
namespace fs = std::filesystem;

Result<fs::path> resolve_iteration_dir(const fs::path& path) {
  std::error_code ec;
  if (fs::exists(path / ".metadata", ec)) return path;
  if (!fs::is_directory(path, ec)) return Status::not_found(path.string() + ": not a directory");
  if (fs::exists(path / "latest_checkpointed_iteration.txt", ec)) {
    G4_ASSIGN_OR_RETURN(std::string text, read_text_file(path / "latest_checkpointed_iteration.txt", 64));
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (text == "release") return path / "release";
    // Only digits: strtoll alone would stop at a NUL byte and read "\0garbage" as iteration 0.
    const bool digits = !text.empty() && text.size() <= 18 &&
                        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) {
      for (char& c : text) if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
      return Status::corruption((path / "latest_checkpointed_iteration.txt").string() + ": expected an iteration or 'release', got '" + text + "'");
    }
    char name[32];
    std::snprintf(name, sizeof name, "iter_%07lld", std::stoll(text));
    return path / name;
  }
  std::string best;
  for (const auto& entry : fs::directory_iterator(path, ec))
    if (entry.is_directory() && entry.path().filename().string().starts_with("iter_") && entry.path().filename().string() > best)
      best = entry.path().filename().string();
  if (best.empty()) return Status::not_found(path.string() + ": no .metadata, tracker file or iter_* directory (not a torch_dist checkpoint)");
  return path / best;
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::open(const fs::path& path) {
  G4_ASSIGN_OR_RETURN(fs::path iter, resolve_iteration_dir(path));
  std::error_code ec;
  if (!fs::exists(iter / ".metadata", ec)) return Status::not_found(iter.string() + ": no .metadata (not a torch_dist iteration directory)");
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->iter_ = iter;
  G4_ASSIGN_OR_RETURN(ckpt->metadata_, read_metadata(iter));
  for (const auto& [key, entry] : ckpt->metadata_.tensors)
    for (const TensorChunk& c : entry.chunks)
      if (!ckpt->maps_.count(c.where.relative_path)) {
        G4_ASSIGN_OR_RETURN(MappedFile m, MappedFile::open(iter / c.where.relative_path));
        ckpt->maps_.emplace(c.where.relative_path, std::move(m));
      }
  return ckpt;
}

void Slab::copy(uint64_t begin, std::span<std::byte> out) const {
  (void)visit(begin, begin + out.size(), [&](std::span<const std::byte> src, uint64_t at) {
    std::memcpy(out.data() + at, src.data(), src.size());
    return Status();
  });
}

const MappedFile* Checkpoint::mapping_of(std::span<const std::byte> bytes, std::string* name, size_t* offset) const {
  for (const auto& [file, map] : maps_) {
    const std::byte* base = map.bytes().data();
    if (bytes.data() >= base && bytes.data() + bytes.size() <= base + map.size()) {
      if (name) *name = file;
      *offset = static_cast<size_t>(bytes.data() - base);
      return &map;
    }
  }
  return nullptr;
}

std::optional<std::pair<fs::path, uint64_t>> Checkpoint::locate(std::span<const std::byte> bytes) const {
  std::string name;
  size_t offset = 0;
  if (!mapping_of(bytes, &name, &offset)) return std::nullopt;
  return std::make_pair(iter_ / name, static_cast<uint64_t>(offset));
}

void Checkpoint::will_need(std::span<const std::byte> bytes) const {
  size_t offset = 0;
  if (const MappedFile* map = mapping_of(bytes, nullptr, &offset)) map->will_need(offset, bytes.size());
}

void Checkpoint::release(std::span<const std::byte> bytes) const {
  size_t offset = 0;
  if (const MappedFile* map = mapping_of(bytes, nullptr, &offset)) map->release(offset, bytes.size());
}

bool is_training_state_key(const std::string& key) {
  return key.starts_with("optimizer.") || key.starts_with("rng_state") || key.starts_with("rerun_state_machine") ||
         key.starts_with("common_state");
}

const TensorEntry* Checkpoint::find(const std::string& key) const {
  auto it = metadata_.tensors.find(key);
  return it == metadata_.tensors.end() ? nullptr : &it->second;
}

namespace {

// Row-major element index of `pos - origin` in a box of `sizes`.
uint64_t linear_index(const std::vector<int64_t>& pos, const std::vector<int64_t>& origin, const std::vector<int64_t>& sizes) {
  uint64_t at = 0;
  for (size_t d = 0; d < pos.size(); ++d) at = at * static_cast<uint64_t>(sizes[d]) + static_cast<uint64_t>(pos[d] - origin[d]);
  return at;
}

}  // namespace

Result<Shape> Checkpoint::stored_shape(const std::string& key, const std::vector<int64_t>& axes, const Shape& shape,
                                            bool extra_rows) const {
  const std::string where = iter_.string() + ": '" + key + "'";
  const TensorEntry* entry = find(key);
  if (!entry) return Status::not_found(where + " is missing");
  if (!entry->chunk_problem.empty()) return Status::corruption(entry->chunk_problem);
  // The whole stored tensor, stacked axes included, must be what the caller's config implies; a vocabulary
  // parameter may have more rows (padding), never fewer or other row dims.
  Shape expected = axes;
  expected.insert(expected.end(), shape.begin(), shape.end());
  if (extra_rows && axes.empty() && !shape.empty() && entry->shape.size() == shape.size() && entry->shape[0] > shape[0] &&
      std::equal(shape.begin() + 1, shape.end(), entry->shape.begin() + 1))
    expected = entry->shape;
  if (entry->shape != expected)
    return Status::invalid_argument(where + " has shape " + shape_to_string(entry->shape) + ", the config implies " +
                                    shape_to_string(expected) + (extra_rows ? " (or more rows: vocabulary padding)" : ""));
  return expected;
}

Result<std::shared_ptr<const Slab>> Checkpoint::read_slab(const std::string& key, const std::vector<int64_t>& index,
                                                               const std::vector<int64_t>& axes, const Shape& shape, bool extra_rows) const {
  const std::string where = iter_.string() + ": '" + key + "'";
  G4_RETURN_IF_ERROR(stored_shape(key, axes, shape, extra_rows).status());
  if (index.size() != axes.size())
    return Status::internal(where + ": position " + shape_to_string(index) + " on stacked axes " + shape_to_string(axes));
  for (size_t d = 0; d < index.size(); ++d)
    if (index[d] < 0 || index[d] >= axes[d])
      return Status::internal(where + ": position " + shape_to_string(index) + " outside stacked axes " + shape_to_string(axes));
  // The box read: one position on the stacked axes, the parameter's own dims (its first rows when padded).
  std::vector<int64_t> box_off = index, box_size(index.size(), 1);
  for (int64_t d : shape) box_off.push_back(0), box_size.push_back(d);
  return read_box(key, *find(key), std::move(box_off), std::move(box_size), index.size());
}

Result<std::shared_ptr<const Slab>> Checkpoint::read_rows(const std::string& key, int64_t first, const Shape& shape) const {
  const std::string where = iter_.string() + ": '" + key + "'";
  const TensorEntry* entry = find(key);
  if (!entry) return Status::not_found(where + " is missing");
  if (!entry->chunk_problem.empty()) return Status::corruption(entry->chunk_problem);
  if (shape.empty() || entry->shape.size() != shape.size() || !std::equal(shape.begin() + 1, shape.end(), entry->shape.begin() + 1) ||
      first < 0 || shape[0] < 0 || first > entry->shape[0] - shape[0])
    return Status::internal(where + ": rows " + std::to_string(first) + "+" + shape_to_string(shape) + " outside " + shape_to_string(entry->shape));
  std::vector<int64_t> box_off(shape.size(), 0), box_size(shape.begin(), shape.end());
  box_off[0] = first;
  return read_box(key, *entry, std::move(box_off), std::move(box_size), 0);
}

Result<std::shared_ptr<const Slab>> Checkpoint::read_box(const std::string& key, const TensorEntry& stored,
                                                              std::vector<int64_t> box_off, std::vector<int64_t> box_size,
                                                              size_t lead) const {
  const std::string where = iter_.string() + ": '" + key + "'";
  const TensorEntry* entry = &stored;
  const Shape& expected = entry->shape;
  const std::vector<int64_t> index(box_off.begin(), box_off.begin() + static_cast<std::ptrdiff_t>(lead));
  const size_t rank = expected.size();
  auto slab = std::make_shared<Slab>();
  slab->dtype = entry->dtype;
  const size_t es = dtype_size(entry->dtype);
  const uint64_t numel = checked_numel(box_size).value_or(0);
  slab->size = numel * es;
  if (numel == 0) return std::shared_ptr<const Slab>(std::move(slab));  // an empty parameter has no parts

  // The chunks that meet the box (the chunks tile the tensor exactly: each element lies in one), with the
  // intersection [lo, hi). A chunk spanning all of the parameter's dims after its first holds its part of the
  // box as one contiguous run, laid out as in the slab: a view, no copy (rows of a dim-0 split, a whole stack
  // in one chunk, a 0-d or 1-D parameter). Any other chunking (column splits) is copied into one buffer.
  struct Meet {
    const TensorChunk* chunk;
    std::vector<int64_t> lo, hi;
  };
  std::vector<Meet> meets;
  bool views = true;
  for (const TensorChunk& c : entry->chunks) {
    Meet m{&c, std::vector<int64_t>(rank), std::vector<int64_t>(rank)};
    bool empty = false;
    for (size_t d = 0; d < rank; ++d) {
      m.lo[d] = std::max(box_off[d], c.offsets[d]);
      m.hi[d] = std::min(box_off[d] + box_size[d], c.offsets[d] + c.sizes[d]);
      empty |= m.lo[d] >= m.hi[d];
    }
    if (empty) continue;
    for (size_t d = lead + 1; d < rank; ++d) views &= c.offsets[d] == 0 && c.sizes[d] == expected[d];
    meets.push_back(std::move(m));
  }
  std::vector<torch::TensorView> blobs;
  for (const Meet& m : meets) {
    G4_ASSIGN_OR_RETURN(torch::TensorView v, read_chunk(iter_, *m.chunk, maps_, key));
    if (v.dtype != entry->dtype) return Status::corruption(where + ": blob dtype differs from .metadata");
    if (v.data.size() != checked_numel(m.chunk->sizes).value_or(0) * es) return Status::corruption(where + ": blob size differs from its shape");
    blobs.push_back(v);
  }

  if (views) {
    for (size_t k = 0; k < meets.size(); ++k) {
      const Meet& m = meets[k];
      uint64_t count = 1;
      for (size_t d = 0; d < rank; ++d) count *= static_cast<uint64_t>(m.hi[d] - m.lo[d]);
      const uint64_t src = linear_index(m.lo, m.chunk->offsets, m.chunk->sizes), dst = linear_index(m.lo, box_off, box_size);
      slab->parts.push_back({dst * es, blobs[k].data.subspan(src * es, count * es)});
    }
    std::sort(slab->parts.begin(), slab->parts.end(), [](const Slab::Part& a, const Slab::Part& b) { return a.begin < b.begin; });
  } else {
    slab->owned.assign(numel * es, std::byte{0});
    for (size_t k = 0; k < meets.size(); ++k) {
      const Meet& m = meets[k];
      const TensorChunk& c = *m.chunk;
      // Walk the intersection one innermost run at a time (rank >= 2 here: a split after the parameter's dim 0).
      const uint64_t run = static_cast<uint64_t>(m.hi[rank - 1] - m.lo[rank - 1]);
      std::vector<int64_t> pos = m.lo;
      while (true) {
        const uint64_t src = linear_index(pos, c.offsets, c.sizes), dst = linear_index(pos, box_off, box_size);
        std::memcpy(slab->owned.data() + dst * es, blobs[k].data.data() + src * es, run * es);
        int d = static_cast<int>(rank) - 2;  // odometer over every dim but the innermost
        for (; d >= 0; --d) {
          if (++pos[d] < m.hi[d]) break;
          pos[d] = m.lo[d];
        }
        if (d < 0) break;
      }
    }
    slab->parts = {{0, std::span<const std::byte>(slab->owned)}};
  }
  // Exact tiling was checked on the whole tensor when .metadata was read; the parts must tile the slab.
  uint64_t next = 0;
  for (const Slab::Part& p : slab->parts) {
    if (p.begin != next) break;
    next += p.bytes.size();
  }
  if (next != slab->size)
    return Status::internal(where + ": the chunks do not tile " + shape_to_string(index) + " of the stacked axes");
  return std::shared_ptr<const Slab>(std::move(slab));
}

}  // namespace g4::dcp
