// Reading a Megatron-Core torch_dist checkpoint (ours, Megatron-Bridge's or Megatron-LM's): resolving the
// iteration directory from a root (tracker, latest_train_state.pt, iter_* or release), the DCP metadata,
// and any stored parameter "slab" (one layer of a stacked key, or an unstacked tensor) whatever the chunking
// the writer chose. Optimizer, RNG and rerun state are never read.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "runtime/dcp/dcp_metadata.h"
#include "runtime/mapped_file.h"

namespace g4::convert {

// The iteration directory of `path`: `path` itself when it holds .metadata; else by the tracker file
// ("release" or N), else the highest iter_* directory.
Result<std::filesystem::path> resolve_iteration_dir(const std::filesystem::path& path);

// One stored parameter's bytes: a view into a .distcp blob when one chunk holds exactly the slab (the
// layout we and Megatron write at TP=1), else a buffer assembled from every chunk that intersects it.
struct Slab {
  DType dtype = DType::kBF16;
  std::span<const std::byte> bytes;
  std::vector<std::byte> owned;
};

class McoreCheckpoint {
 public:
  static Result<std::unique_ptr<McoreCheckpoint>> open(const std::filesystem::path& path);

  const std::filesystem::path& iteration_dir() const { return iter_; }
  const dcp::Metadata& metadata() const { return metadata_; }
  const dcp::TensorEntry* find(const std::string& key) const;

  // The slab at `index` on the prepended axes of `key`, with `shape` (the parameter's own shape).
  // Thread-safe. Errors name the checkpoint and key (missing key, shape disagreeing with the config, holes).
  Result<std::shared_ptr<const Slab>> read_slab(const std::string& key, const std::vector<int64_t>& index, const Shape& shape) const;

 private:
  std::filesystem::path iter_;
  dcp::Metadata metadata_;
  mutable std::map<std::string, MappedFile> maps_;  // every .distcp file, opened up front
};

}  // namespace g4::convert
