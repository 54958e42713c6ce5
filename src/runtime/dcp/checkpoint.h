// Reading a Megatron-Core torch_dist checkpoint (ours, Megatron-Bridge's or Megatron-LM's): resolving the
// iteration directory from a root (tracker, latest_train_state.pt, iter_* or release), the DCP metadata,
// and any stored parameter "slab" (one layer of a stacked key, or an unstacked tensor) whatever the chunking
// the writer chose. Optimizer, RNG and rerun state are never read. Knows no model: what the keys mean for
// Gemma 4 is src/convert/mcore_keys.h.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "runtime/dcp/dcp_metadata.h"
#include "runtime/mapped_file.h"

namespace g4::dcp {

// The iteration directory of `path`: `path` itself when it holds .metadata; else by the tracker file
// ("release" or N), else the highest iter_* directory.
Result<std::filesystem::path> resolve_iteration_dir(const std::filesystem::path& path);

// One stored parameter's bytes, row-major, as byte ranges: views into .distcp blobs when every chunk that meets
// the parameter spans all of its dims after the first (one chunk per layer or per expert, a TP split of a
// column-parallel weight, a whole stack in one chunk, any 0-d or 1-D parameter: no copy), else one buffer
// assembled from every chunk that intersects it. An empty parameter has no parts.
struct Slab {
  struct Part {
    uint64_t begin = 0;  // byte offset of this part in the parameter
    std::span<const std::byte> bytes;
  };
  DType dtype = DType::kBF16;
  uint64_t size = 0;         // bytes of the whole parameter
  std::vector<Part> parts;   // sorted, tiling [0, size)
  std::vector<std::byte> owned;

  // Calls fn(src, offset_in_range) for the contiguous pieces of bytes [begin, end) of the parameter.
  template <class Fn>
  Status visit(uint64_t begin, uint64_t end, Fn&& fn) const {
    for (const Part& p : parts) {
      const uint64_t p0 = p.begin, p1 = p.begin + p.bytes.size();
      if (p1 <= begin || p0 >= end) continue;
      const uint64_t b0 = std::max(begin, p0), b1 = std::min(end, p1);
      G4_RETURN_IF_ERROR(fn(p.bytes.subspan(b0 - p0, b1 - b0), b0 - begin));
    }
    return {};
  }
  // Copies bytes [begin, begin + out.size()) into `out`.
  void copy(uint64_t begin, std::span<std::byte> out) const;
};

// Keys of training state a Megatron checkpoint may hold besides the model (optimizer, RNG, rerun state, the
// common-state object): never read by the converters.
bool is_training_state_key(const std::string& key);

class Checkpoint {
 public:
  static Result<std::unique_ptr<Checkpoint>> open(const std::filesystem::path& path);

  const std::filesystem::path& iteration_dir() const { return iter_; }
  const Metadata& metadata() const { return metadata_; }
  const TensorEntry* find(const std::string& key) const;
  // The file and offset a view returned by read_slab lies at (for tools that patch a checkpoint in place).
  std::optional<std::pair<std::filesystem::path, uint64_t>> locate(std::span<const std::byte> bytes) const;
  // Drops the resident pages under `bytes` (a view into one of the mapped .distcp files) after streaming it.
  void release(std::span<const std::byte> bytes) const;
  // Asks the kernel to read these mapped bytes ahead in large requests (before a pass over them).
  void will_need(std::span<const std::byte> bytes) const;

  // The slab at `index` on the prepended (stacked) axes `axes` of `key`, with `shape` (the parameter's own
  // shape); the stored tensor must have exactly the shape `axes ++ shape` the caller's config implies, and its
  // chunks must tile it exactly. Any rank, 0-d and empty tensors included. Thread-safe. Errors name the
  // checkpoint and key (missing key, shape disagreeing with the config, chunks overlapping or leaving a hole).
  // `extra_rows` (an unstacked parameter): the stored tensor may have more dim-0 rows than `shape` (a padded
  // vocabulary) and the slab is its first shape[0] rows; the caller checks the others.
  Result<std::shared_ptr<const Slab>> read_slab(const std::string& key, const std::vector<int64_t>& index,
                                                const std::vector<int64_t>& axes, const Shape& shape, bool extra_rows = false) const;
  // The stored shape of `key` after the checks read_slab makes (exists, chunks tile it, shape as the config
  // implies with `axes` prepended, more rows only for `extra_rows`), without reading data.
  Result<Shape> stored_shape(const std::string& key, const std::vector<int64_t>& axes, const Shape& shape, bool extra_rows = false) const;
  // Rows [first, first + shape[0]) of the unstacked tensor `key`, whose other dims must be shape's.
  Result<std::shared_ptr<const Slab>> read_rows(const std::string& key, int64_t first, const Shape& shape) const;

 private:
  // The box at `box_off` of `box_size` (stacked axes first) of the stored tensor `entry`, as a slab.
  Result<std::shared_ptr<const Slab>> read_box(const std::string& key, const TensorEntry& entry, std::vector<int64_t> box_off,
                                               std::vector<int64_t> box_size, size_t lead) const;

  std::filesystem::path iter_;
  Metadata metadata_;
  // The mapped .distcp file holding `bytes` (its name and the bytes' offset in it), or null.
  const MappedFile* mapping_of(std::span<const std::byte> bytes, std::string* name, size_t* offset) const;
  mutable std::map<std::string, MappedFile> maps_;  // every .distcp file, opened up front
};

}  // namespace g4::dcp
