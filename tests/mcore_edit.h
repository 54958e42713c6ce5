// Test helpers that edit a Megatron checkpoint to plant defects: patch one stored parameter of a checkpoint
// written by hf2mcore, in place, to plant a conversion bug (the .distcp bytes are rewritten; our reader does not
// check the zip CRC); rewrite .metadata; replace a tensor by one of another shape.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/tensor_info.h"
#include "runtime/torch/py_value.h"

namespace g4::testing {

// `edit` gets the parameter's values as f32 (row-major, `shape`) and changes them; they are written back in
// the stored dtype. `index` is the position on the stacked axes ({} for unstacked keys).
void edit_mcore_param(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& index,
                      const Shape& shape, const std::function<void(std::vector<float>&)>& edit);

// Rewrites `dir`/.metadata (a DCP directory): every node of its unpickled object graph is rebuilt bottom-up and
// passed to `replace`, which returns it or a substitute. Plants inconsistencies our writer refuses to write.
void edit_dcp_metadata(const std::filesystem::path& dir, const std::function<torch::PyPtr(const torch::PyPtr&)>& replace);
// torch.Size(dims) as .metadata pickles it, and whether `v` is one with exactly these dims.
torch::PyPtr torch_size(const std::vector<int64_t>& dims);
bool is_torch_size(const torch::PyValue& v, const std::vector<int64_t>& dims);

// Makes the chunk of `key` at offsets `from` claim offsets `to` in .metadata (its blob stays): with `to` on
// another chunk, two chunks overlap and `from` becomes a hole of the same size.
void move_dcp_chunk(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& from,
                    const std::vector<int64_t>& to);
// Replaces tensor `key` of a Megatron checkpoint (root or iteration directory) by one of `shape` in one chunk,
// holding `values` (row-major, stored as `dtype`), written into a new .distcp file.
void replace_mcore_tensor(const std::filesystem::path& checkpoint, const std::string& key, DType dtype, const Shape& shape,
                          const std::vector<float>& values);
// Renames the tensors and objects of a Megatron checkpoint (root or iteration directory) in its .metadata:
// `rename` returns a key's new name, or "" to drop it (its bytes stay, unreferenced). Builds what a writer with
// other names wrote, e.g. Megatron-Bridge's text mode (no "language_model." prefix, no towers).
void rename_mcore_keys(const std::filesystem::path& checkpoint, const std::function<std::string(const std::string&)>& rename);
// A stored tensor's values as f32 (whole tensor, any chunking).
std::vector<float> read_mcore_tensor(const std::filesystem::path& checkpoint, const std::string& key);

}  // namespace g4::testing
