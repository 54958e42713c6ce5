// torch.save files: writing a pickled object graph whose tensors are storages in the same zip, and reading
// one back safely (torch.load(weights_only=True)'s allowlist, no code execution) with zero-copy tensor views.
// Byte layout: megatron-checkpoint-format.md §2 (record order data.pkl, byteorder, data/<k>, version; no
// .format_version, so torch reads our real offsets).
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/mapped_file.h"
#include "runtime/tensor_info.h"
#include "runtime/torch/py_value.h"
#include "runtime/torch/zip_reader.h"
#include "runtime/torch/zip_writer.h"

namespace g4::torch {

// The torch storage class of a dtype ("BFloat16Storage"), or empty when it has none.
std::string storage_class(DType dtype);

// Collects tensors while the caller builds the object graph, then writes everything as one file.
class TorchSaveWriter {
 public:
  using Producer = std::function<Status(uint64_t offset, std::span<std::byte> out)>;

  // A contiguous CPU tensor (torch._utils._rebuild_tensor_v2) whose bytes `produce` streams at write time.
  PyPtr tensor(DType dtype, const Shape& shape, Producer produce);
  PyPtr tensor(DType dtype, const Shape& shape, std::span<const std::byte> data);

  // Writes `root` to `path` with archive prefix `archive` (torch uses the file stem, or "archive" for streams).
  Status write(const std::filesystem::path& path, const PyValue& root, const std::string& archive) const;
  // The same archive into an already open writer (one item of a DCP .distcp file); finishes the archive.
  Status write_into(ZipWriter& zip, const PyValue& root, const std::string& archive) const;

 private:
  struct Storage {
    uint64_t bytes;
    Producer produce;
  };
  std::vector<Storage> storages_;
};

// A parsed torch.save file. `root` refers into `archive`, which refers into `map`; keep them together.
struct TorchFile {
  MappedFile map;
  ZipArchive archive;
  PyPtr root;
  std::string path;
};

Result<TorchFile> load_torch_file(const std::filesystem::path& path);
// The same from bytes in memory (`bytes` must outlive the result's spans); `where` names them in messages.
Result<std::pair<ZipArchive, PyPtr>> parse_torch_bytes(std::span<const std::byte> bytes, std::string_view where);

struct TensorView {
  DType dtype = DType::kF32;
  Shape shape;
  std::span<const std::byte> data;  // contiguous, exactly numel × dtype size bytes
};

// Interprets a _rebuild_tensor_v2 / _rebuild_parameter node as a contiguous tensor over its storage record.
// Non-contiguous strides, out-of-range offsets and unknown storages are errors naming `where`.
Result<TensorView> tensor_view(const ZipArchive& archive, const PyValue& node, std::string_view where);
bool is_tensor_node(const PyValue& node);

}  // namespace g4::torch
