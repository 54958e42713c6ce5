// Reading PyTorch Distributed Checkpoint (DCP) directories as torch 2.x writes them
// (megatron-checkpoint-format.md §3): `.metadata` is a pickle (protocol 4 today) of
// torch.distributed.checkpoint.metadata.Metadata, parsed here by the safe reader with every class kept
// as data (unknown classes included: nothing is executed); `__R_K.distcp` files hold one torch.save blob
// per chunk or byte item at the offset `_StorageInfo` gives.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "runtime/mapped_file.h"
#include "runtime/tensor_info.h"
#include "runtime/torch/torch_save.h"

namespace g4::dcp {

struct StorageLocation {
  std::string relative_path;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct TensorChunk {
  std::vector<int64_t> offsets;  // where this chunk sits in the global tensor
  std::vector<int64_t> sizes;
  StorageLocation where;
};

struct TensorEntry {
  std::string fqn;
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<TensorChunk> chunks;
  // Why the chunks do not tile `shape` exactly (two overlapping, a hole; the message names the .metadata file and
  // key); empty when they do. Checked once when .metadata is parsed; readers refuse the tensor, inspect reports
  // it. A chunk of another rank or outside the tensor fails the parse.
  std::string chunk_problem;
};

struct Metadata {
  std::map<std::string, TensorEntry> tensors;
  std::map<std::string, StorageLocation> byte_items;  // BytesStorageMetadata entries (e.g. common state)
};

Result<Metadata> read_metadata(const std::filesystem::path& dir);
// The same from the bytes of a `.metadata` file; `file` names it in messages.
Result<Metadata> parse_metadata(std::span<const std::byte> bytes, const std::string& file);

// Reads one chunk's blob from its .distcp file; the view points into `file_map` (keep it alive).
Result<torch::TensorView> read_chunk(const std::filesystem::path& dir, const TensorChunk& chunk,
                                     std::map<std::string, MappedFile>& file_maps, std::string_view fqn);

}  // namespace g4::dcp
