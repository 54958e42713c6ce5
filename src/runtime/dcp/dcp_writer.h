// Writing PyTorch Distributed Checkpoint (DCP) directories as torch 2.x's FileSystemWriter does
// (megatron-checkpoint-format.md §3): every chunk and byte item is a self-contained torch.save archive
// appended to a `__0_K.distcp` file, and `.metadata` pickles Metadata / TensorStorageMetadata /
// TensorProperties / ChunkStorageMetadata / BytesStorageMetadata / MetadataIndex / _StorageInfo with the
// module paths and field layout torch >= 2.3 unpickles. Files are written in parallel, one task per file.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/dcp/chunk_cover.h"
#include "runtime/tensor_info.h"
#include "runtime/thread_pool.h"
#include "runtime/torch/torch_save.h"

namespace g4::dcp {

struct ChunkToWrite {
  std::vector<int64_t> offsets;  // position in the global tensor
  Shape sizes;                   // the chunk's own shape; its blob holds exactly this tensor
  torch::TorchSaveWriter::Producer produce;  // contiguous bytes of the chunk
};

struct TensorToWrite {
  std::string fqn;
  DType dtype = DType::kBF16;
  Shape shape;  // global
  std::vector<ChunkToWrite> chunks;
};

// A BYTE_IO item: whatever torch.save archive `write` puts into the zip (Megatron: a list of one object).
struct BytesToWrite {
  std::string fqn;
  std::function<Status(torch::ZipWriter&)> write;
};

struct DcpWriteOptions {
  size_t files = 1;             // number of .distcp files, written concurrently
  ThreadPool* pool = nullptr;   // null: one file after another on the calling thread
  // Called after each item with the running totals of chunk payload bytes and items; serialised.
  std::function<void(uint64_t bytes_done, size_t items_done)> on_progress;
};

// Checks that the chunks of every tensor lie inside it, do not overlap and cover it, then writes the
// items and `.metadata` into `dir` (which must exist) and fsyncs them.
Status write_dcp(const std::filesystem::path& dir, const std::vector<TensorToWrite>& tensors,
                 const std::vector<BytesToWrite>& byte_items, const DcpWriteOptions& options);

// torch.save([torch.empty(0, dtype=torch.uint8)]) — Transformer Engine's `_extra_state` without FP8 —
// and torch.save([None]) — the `_extra_state` of Megatron's own linears.
Status write_empty_extra_state(torch::ZipWriter& zip);
Status write_none_extra_state(torch::ZipWriter& zip);

}  // namespace g4::dcp
