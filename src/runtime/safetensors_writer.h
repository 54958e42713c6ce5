// Streaming safetensors writer. Tensors are described up front (name, dtype, shape) and their bytes are
// produced chunk by chunk by a fill callback, so memory is bounded by (threads × chunk size), never by
// the model. Shards follow huggingface_hub's rule (a new shard when the next tensor would pass the limit;
// a tensor larger than the limit gets a shard of its own); more than one shard gets
// model.safetensors.index.json with metadata.total_size. Headers carry {"format":"pt"} and are padded
// to 8 bytes with spaces, as the safetensors library writes them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/tensor_info.h"
#include "runtime/status.h"
#include "runtime/thread_pool.h"

namespace g4 {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t nbytes() const { return checked_numel(shape).value_or(0) * dtype_size(dtype); }
};

// Fills `out` with bytes [offset, offset + out.size()) of tensor `index`'s data. Called concurrently.
using TensorFill = std::function<Status(size_t index, uint64_t offset, std::span<std::byte> out)>;

struct ShardPlan {
  std::string file_name;
  std::vector<size_t> tensors;  // indices into the spec list, in file order
  uint64_t data_bytes = 0;
};

inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;  // transformers' "5GB"

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_shard_bytes);
// The header bytes (JSON padded to a multiple of 8) for one shard, without the 8-byte length prefix.
std::string safetensors_header(const std::vector<TensorSpec>& specs, const std::vector<size_t>& order);

struct SafetensorsWriteOptions {
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  size_t chunk_bytes = 64u << 20;
  ThreadPool* pool = nullptr;  // null: write on the calling thread
  // Called after each finished chunk with totals so far; serialised by the writer.
  std::function<void(uint64_t bytes_done, size_t tensors_done)> on_progress;
};

// Writes every tensor into `dir` (which must exist, normally an OutputDir's temp path) and fsyncs the files.
Status write_safetensors_checkpoint(const std::filesystem::path& dir, const std::vector<TensorSpec>& specs,
                                    const TensorFill& fill, const SafetensorsWriteOptions& options);

// Writes every tensor into the single file `path` (no sharding) and fsyncs it; `path` is normally an
// OutputFile's temp path, committed by the caller.
Status write_safetensors_file(const std::filesystem::path& path, const std::vector<TensorSpec>& specs,
                              const TensorFill& fill, const SafetensorsWriteOptions& options);

// Parses "5GB", "500MB", "2GiB", "1000" (bytes) as transformers does (GB = 10^9, GiB = 2^30).
Result<uint64_t> parse_byte_size(std::string_view text);

}  // namespace g4
