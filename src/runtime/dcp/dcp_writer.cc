#include "runtime/dcp/dcp_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "runtime/output_dir.h"
#include "runtime/torch/pickle_writer.h"

namespace g4::dcp {
namespace fs = std::filesystem;
using torch::PyPtr;

namespace {

struct StoredAt {
  std::string file;
  uint64_t offset = 0, length = 0;
};

// One item of a .distcp file: a tensor chunk (tensor, chunk) or a byte item (tensor = npos).
struct Item {
  size_t tensor = SIZE_MAX, chunk = 0, byte_item = 0;
  uint64_t bytes = 0;
};

const char* kMetadataModule = "torch.distributed.checkpoint.metadata";

std::string torch_dtype_name(DType d) {
  switch (d) {
    case DType::kF32: return "float32";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    case DType::kF64: return "float64";
    case DType::kI64: return "int64";
    case DType::kI32: return "int32";
    case DType::kI16: return "int16";
    case DType::kI8: return "int8";
    case DType::kU8: return "uint8";
    case DType::kBool: return "bool";
    default: return "";
  }
}

PyPtr torch_size(const std::vector<int64_t>& dims) {
  std::vector<PyPtr> items;
  for (int64_t d : dims) items.push_back(torch::py_int(d));
  return torch::py_call(torch::py_global("torch", "Size"), {torch::py_tuple(std::move(items))});
}

PyPtr dataclass(const std::string& module, const std::string& name, std::vector<std::pair<PyPtr, PyPtr>> fields) {
  return torch::py_object(torch::py_global(module, name), {}, torch::py_dict(std::move(fields)));
}

PyPtr key(const char* s) { return torch::py_str(s); }

// TensorProperties pickles its __getstate__ 5-tuple (dtype, layout, requires_grad, memory format, pin_memory).
PyPtr tensor_properties(DType dtype) {
  PyPtr state = torch::py_tuple({
      torch::py_global("torch", torch_dtype_name(dtype)),
      torch::py_call(torch::py_global("torch.serialization", "_get_layout"), {torch::py_str("torch.strided")}),
      torch::py_bool(false),
      torch::py_call(torch::py_global(kMetadataModule, "_MEM_FORMAT_ENCODING"), {torch::py_int(0)}),
      torch::py_bool(false),
  });
  return torch::py_object(torch::py_global(kMetadataModule, "TensorProperties"), {}, state);
}

PyPtr metadata_index(const std::string& fqn, const std::vector<int64_t>* offset) {
  std::vector<std::pair<PyPtr, PyPtr>> f = {{key("fqn"), torch::py_str(fqn)}, {key("index"), torch::py_none()}};
  if (offset) f.push_back({key("offset"), torch_size(*offset)});
  return dataclass(kMetadataModule, "MetadataIndex", std::move(f));
}

PyPtr storage_info(const StoredAt& at) {
  return dataclass("torch.distributed.checkpoint.filesystem", "_StorageInfo",
                   {{key("relative_path"), torch::py_str(at.file)},
                    {key("offset"), torch::py_int(static_cast<int64_t>(at.offset))},
                    {key("length"), torch::py_int(static_cast<int64_t>(at.length))}});
}

}  // namespace

Status write_empty_extra_state(torch::ZipWriter& zip) {
  torch::TorchSaveWriter w;
  PyPtr empty = w.tensor(DType::kU8, {0}, std::span<const std::byte>());
  return w.write_into(zip, *torch::py_list({empty}), "archive");
}

Status write_none_extra_state(torch::ZipWriter& zip) {
  torch::TorchSaveWriter w;
  return w.write_into(zip, *torch::py_list({torch::py_none()}), "archive");
}

Status write_dcp(const fs::path& dir, const std::vector<TensorToWrite>& tensors, const std::vector<BytesToWrite>& byte_items,
                 const DcpWriteOptions& options) {
  std::vector<Item> items;
  for (size_t b = 0; b < byte_items.size(); ++b) items.push_back({SIZE_MAX, 0, b, 0});
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorToWrite& tw = tensors[t];
    if (torch_dtype_name(tw.dtype).empty()) return Status::not_supported(tw.fqn + ": dtype has no torch name");
    std::vector<std::vector<int64_t>> offsets;
    std::vector<Shape> sizes;
    for (size_t c = 0; c < tw.chunks.size(); ++c) {
      offsets.push_back(tw.chunks[c].offsets);
      sizes.push_back(tw.chunks[c].sizes);
      const std::optional<uint64_t> n = checked_numel(tw.chunks[c].sizes);
      if (!n) return Status::invalid_argument(tw.fqn + ": invalid chunk shape");
      items.push_back({t, c, 0, *n * dtype_size(tw.dtype)});
    }
    G4_RETURN_IF_ERROR(check_chunk_cover(tw.fqn, tw.shape, offsets, sizes));
  }

  // Byte items first in file 0 (as torch orders them); chunks go to the least loaded file, in order.
  const size_t files = std::max<size_t>(1, options.files);
  std::vector<std::vector<size_t>> per_file(files);
  std::vector<uint64_t> load(files, 0);
  for (size_t k = 0; k < items.size(); ++k) {
    size_t f = 0;
    if (items[k].tensor != SIZE_MAX) f = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    per_file[f].push_back(k);
    load[f] += items[k].bytes + 1024;
  }

  std::vector<StoredAt> stored(items.size());
  std::mutex progress_mutex;
  uint64_t bytes_done = 0;
  size_t items_done = 0;
  auto write_file = [&](size_t f) -> Status {
    if (per_file[f].empty()) return {};
    const std::string name = "__0_" + std::to_string(f) + ".distcp";
    const fs::path path = dir / name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::io_error(path.string() + ": cannot create: " + std::strerror(errno));
    uint64_t base = 0;
    Status status;
    for (size_t k : per_file[f]) {
      const Item& item = items[k];
      torch::ZipWriter zip = torch::ZipWriter::append(fd, base, path.string());
      if (item.tensor == SIZE_MAX) {
        status = byte_items[item.byte_item].write(zip).with_context(byte_items[item.byte_item].fqn);
      } else {
        const TensorToWrite& tw = tensors[item.tensor];
        const ChunkToWrite& chunk = tw.chunks[item.chunk];
        torch::TorchSaveWriter w;
        PyPtr root = w.tensor(tw.dtype, chunk.sizes, chunk.produce);
        status = w.write_into(zip, *root, "archive").with_context(tw.fqn);
      }
      if (!status.ok()) break;
      stored[k] = {name, base, zip.size()};
      base += zip.size();
      if (options.on_progress) {
        std::lock_guard lock(progress_mutex);
        bytes_done += item.bytes;
        options.on_progress(bytes_done, ++items_done);
      }
    }
    if (status.ok() && ::fsync(fd) != 0) status = Status::io_error(path.string() + ": fsync failed: " + std::strerror(errno));
    if (::close(fd) != 0 && status.ok()) status = Status::io_error(path.string() + ": close failed: " + std::strerror(errno));
    return status;
  };
  if (options.pool) {
    G4_RETURN_IF_ERROR(parallel_for_status(*options.pool, files, files, write_file));
  } else {
    for (size_t f = 0; f < files; ++f) G4_RETURN_IF_ERROR(write_file(f));
  }

  // .metadata: state_dict_metadata in tensor order, then storage_data for every item.
  std::vector<std::pair<PyPtr, PyPtr>> sdm, storage;
  for (const BytesToWrite& b : byte_items)
    sdm.push_back({torch::py_str(b.fqn), torch::py_object(torch::py_global(kMetadataModule, "BytesStorageMetadata"), {}, torch::py_none())});
  for (const TensorToWrite& tw : tensors) {
    std::vector<PyPtr> chunks;
    for (const ChunkToWrite& c : tw.chunks)
      chunks.push_back(dataclass(kMetadataModule, "ChunkStorageMetadata",
                                 {{key("offsets"), torch_size(c.offsets)}, {key("sizes"), torch_size(c.sizes)}}));
    sdm.push_back({torch::py_str(tw.fqn),
                   dataclass(kMetadataModule, "TensorStorageMetadata",
                             {{key("properties"), tensor_properties(tw.dtype)},
                              {key("size"), torch_size(tw.shape)},
                              {key("chunks"), torch::py_list(std::move(chunks))}})});
  }
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& item = items[k];
    if (item.tensor == SIZE_MAX) {
      storage.push_back({metadata_index(byte_items[item.byte_item].fqn, nullptr), storage_info(stored[k])});
    } else {
      const TensorToWrite& tw = tensors[item.tensor];
      storage.push_back({metadata_index(tw.fqn, &tw.chunks[item.chunk].offsets), storage_info(stored[k])});
    }
  }
  PyPtr metadata = dataclass(kMetadataModule, "Metadata",
                             {{key("state_dict_metadata"), torch::py_dict(std::move(sdm))},
                              {key("planner_data"), torch::py_none()},
                              {key("storage_data"), torch::py_dict(std::move(storage))},
                              {key("storage_meta"), torch::py_none()},
                              {key("version"), torch::py_str("1.0.0")}});
  return write_file_synced(dir / ".metadata", torch::pickle_dumps(*metadata));
}

}  // namespace g4::dcp
