#include "convert/mcore_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "mappings/mapping_table.h"
#include "runtime/text_file.h"

namespace g4::convert {
namespace fs = std::filesystem;

Result<fs::path> resolve_iteration_dir(const fs::path& path) {
  std::error_code ec;
  if (fs::exists(path / ".metadata", ec)) return path;
  if (!fs::is_directory(path, ec)) return Status::not_found(path.string() + ": not a directory");
  if (fs::exists(path / "latest_checkpointed_iteration.txt", ec)) {
    G4_ASSIGN_OR_RETURN(std::string text, read_text_file(path / "latest_checkpointed_iteration.txt", 64));
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    if (text == "release") return path / "release";
    char name[32];
    char* end = nullptr;
    const long long n = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || n < 0)
      return Status::corruption((path / "latest_checkpointed_iteration.txt").string() + ": expected an iteration or 'release', got '" + text + "'");
    std::snprintf(name, sizeof name, "iter_%07lld", n);
    return path / name;
  }
  std::string best;
  for (const auto& entry : fs::directory_iterator(path, ec))
    if (entry.is_directory() && entry.path().filename().string().starts_with("iter_") && entry.path().filename().string() > best)
      best = entry.path().filename().string();
  if (best.empty()) return Status::not_found(path.string() + ": no .metadata, tracker file or iter_* directory (not a torch_dist checkpoint)");
  return path / best;
}

Result<std::unique_ptr<McoreCheckpoint>> McoreCheckpoint::open(const fs::path& path) {
  G4_ASSIGN_OR_RETURN(fs::path iter, resolve_iteration_dir(path));
  std::error_code ec;
  if (!fs::exists(iter / ".metadata", ec)) return Status::not_found(iter.string() + ": no .metadata (not a torch_dist iteration directory)");
  auto ckpt = std::unique_ptr<McoreCheckpoint>(new McoreCheckpoint());
  ckpt->iter_ = iter;
  G4_ASSIGN_OR_RETURN(ckpt->metadata_, dcp::read_metadata(iter));
  for (const auto& [key, entry] : ckpt->metadata_.tensors)
    for (const dcp::TensorChunk& c : entry.chunks)
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

std::optional<std::pair<fs::path, uint64_t>> McoreCheckpoint::locate(std::span<const std::byte> bytes) const {
  for (const auto& [name, map] : maps_) {
    const std::byte* base = map.bytes().data();
    if (bytes.data() >= base && bytes.data() + bytes.size() <= base + map.size())
      return std::make_pair(iter_ / name, static_cast<uint64_t>(bytes.data() - base));
  }
  return std::nullopt;
}

void McoreCheckpoint::release(std::span<const std::byte> bytes) const {
  for (const auto& [name, map] : maps_) {
    const std::byte* base = map.bytes().data();
    if (bytes.data() >= base && bytes.data() + bytes.size() <= base + map.size()) {
      map.release(static_cast<size_t>(bytes.data() - base), bytes.size());
      return;
    }
  }
}

bool is_training_state_key(const std::string& key) {
  return key.starts_with("optimizer.") || key.starts_with("rng_state") || key.starts_with("rerun_state_machine") ||
         key.starts_with("common_state");
}

std::vector<std::pair<std::string, Shape>> McoreCheckpoint::tower_tensors() const {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [key, entry] : metadata_.tensors)
    for (std::string_view prefix : mappings::kTowerPrefixes)
      if (key.starts_with(prefix)) out.push_back({"model." + key, entry.shape});
  return out;
}

std::string McoreCheckpoint::fused_weights_marker() const {
  for (const auto& [key, entry] : metadata_.tensors)
    if (key.find("pffl_weight") != std::string::npos) return key;
  return {};
}

const dcp::TensorEntry* McoreCheckpoint::find(const std::string& key) const {
  auto it = metadata_.tensors.find(key);
  return it == metadata_.tensors.end() ? nullptr : &it->second;
}

Result<std::shared_ptr<const Slab>> McoreCheckpoint::read_slab(const std::string& key, const std::vector<int64_t>& index,
                                                               const Shape& shape) const {
  const std::string where = iter_.string() + ": '" + key + "'";
  const dcp::TensorEntry* entry = find(key);
  if (!entry) return Status::not_found(where + " is missing");
  Shape global(index.size(), 0);
  for (size_t d = 0; d < index.size(); ++d) global[d] = entry->shape.size() > d ? entry->shape[d] : -1;
  global.insert(global.end(), shape.begin(), shape.end());
  if (entry->shape != global || [&] {
        for (size_t d = 0; d < index.size(); ++d)
          if (index[d] >= entry->shape[d]) return true;
        return false;
      }())
    return Status::invalid_argument(where + " has shape " + shape_to_string(entry->shape) + ", the config implies " +
                                    shape_to_string(global) + " with this layer at " + shape_to_string(index));
  std::vector<int64_t> box_off = index, box_size(index.size(), 1);
  for (int64_t d : shape) box_off.push_back(0), box_size.push_back(d);
  auto slab = std::make_shared<Slab>();
  slab->dtype = entry->dtype;
  const size_t es = dtype_size(entry->dtype);
  const size_t lead = index.size();
  slab->size = checked_numel(box_size).value_or(0) * es;
  // Zero-copy when every intersecting chunk spans the whole parameter except along its dim 0.
  const uint64_t row_bytes = shape.empty() ? es : checked_numel(Shape(shape.begin() + 1, shape.end())).value_or(0) * es;
  std::vector<const dcp::TensorChunk*> row_chunks;
  bool rows_only = !shape.empty();
  for (const dcp::TensorChunk& c : entry->chunks) {
    bool intersects = true;
    for (size_t d = 0; d < lead; ++d) intersects &= c.offsets[d] <= index[d] && index[d] < c.offsets[d] + c.sizes[d];
    if (!intersects) continue;
    bool ok = true;
    for (size_t d = 0; d < lead; ++d) ok &= c.sizes[d] == 1;
    for (size_t d = lead + 1; d < c.offsets.size(); ++d) ok &= c.offsets[d] == 0 && c.sizes[d] == entry->shape[d];
    rows_only &= ok;
    row_chunks.push_back(&c);
  }
  if (rows_only) {
    std::sort(row_chunks.begin(), row_chunks.end(), [&](auto* a, auto* b) { return a->offsets[lead] < b->offsets[lead]; });
    int64_t next = 0;
    for (const dcp::TensorChunk* c : row_chunks) {
      if (c->offsets[lead] != next) { rows_only = false; break; }
      next += c->sizes[lead];
    }
    rows_only &= next == shape[0];
  }
  if (rows_only) {
    for (const dcp::TensorChunk* c : row_chunks) {
      G4_ASSIGN_OR_RETURN(torch::TensorView v, dcp::read_chunk(iter_, *c, maps_, key));
      if (v.dtype != entry->dtype) return Status::corruption(where + ": blob dtype differs from .metadata");
      slab->parts.push_back({static_cast<uint64_t>(c->offsets[lead]) * row_bytes, v.data});
    }
    return std::shared_ptr<const Slab>(std::move(slab));
  }
  // Any other chunking (TP splits of another writer): copy each chunk's intersection with the box.
  if (box_off.empty()) return Status::corruption(where + ": no chunk holds this scalar");
  const uint64_t numel = checked_numel(box_size).value_or(0);
  slab->owned.assign(numel * es, std::byte{0});
  uint64_t covered = 0;
  const size_t rank = box_off.size();
  for (const dcp::TensorChunk& c : entry->chunks) {
    std::vector<int64_t> lo(rank), hi(rank);
    bool empty = false;
    for (size_t d = 0; d < rank; ++d) {
      lo[d] = std::max(box_off[d], c.offsets[d]);
      hi[d] = std::min(box_off[d] + box_size[d], c.offsets[d] + c.sizes[d]);
      empty |= lo[d] >= hi[d];
    }
    if (empty) continue;
    G4_ASSIGN_OR_RETURN(torch::TensorView v, dcp::read_chunk(iter_, c, maps_, key));
    if (v.dtype != entry->dtype) return Status::corruption(where + ": blob dtype differs from .metadata");
    // Walk the intersection one innermost run at a time.
    const int64_t run = hi[rank - 1] - lo[rank - 1];
    std::vector<int64_t> pos = lo;
    while (true) {
      uint64_t src = 0, dst = 0;
      for (size_t d = 0; d < rank; ++d) {
        src = src * static_cast<uint64_t>(c.sizes[d]) + static_cast<uint64_t>(pos[d] - c.offsets[d]);
        dst = dst * static_cast<uint64_t>(box_size[d]) + static_cast<uint64_t>(pos[d] - box_off[d]);
      }
      std::memcpy(slab->owned.data() + dst * es, v.data.data() + src * es, static_cast<size_t>(run) * es);
      covered += static_cast<uint64_t>(run);
      int d = static_cast<int>(rank) - 2;  // odometer over every dim but the innermost
      for (; d >= 0; --d) {
        if (++pos[d] < hi[d]) break;
        pos[d] = lo[d];
      }
      if (d < 0) break;
    }
  }
  if (covered != numel) return Status::corruption(where + ": the chunks do not cover layer " + shape_to_string(index) + " exactly");
  slab->parts = {{0, std::span<const std::byte>(slab->owned)}};
  return std::shared_ptr<const Slab>(std::move(slab));
}

}  // namespace g4::convert
