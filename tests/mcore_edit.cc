#include "mcore_edit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "runtime/dcp/checkpoint.h"
#include "runtime/dcp/dcp_writer.h"
#include "runtime/dtype.h"
#include "runtime/torch/pickle_reader.h"
#include "runtime/torch/pickle_writer.h"
#include "test_support.h"

namespace g4::testing {

void edit_mcore_param(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& index,
                      const Shape& shape, const std::function<void(std::vector<float>&)>& edit) {
  struct Location {
    std::filesystem::path file;
    uint64_t offset, begin, size;
  };
  std::vector<Location> where;
  DType dtype;
  std::vector<float> values;
  {
    auto ckpt = dcp::Checkpoint::open(checkpoint);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().to_string();
    const dcp::TensorEntry* entry = (*ckpt)->find(key);
    ASSERT_TRUE(entry && entry->shape.size() >= index.size()) << key;
    const std::vector<int64_t> axes(entry->shape.begin(), entry->shape.begin() + static_cast<std::ptrdiff_t>(index.size()));
    auto slab = (*ckpt)->read_slab(key, index, axes, shape);
    ASSERT_TRUE(slab.ok()) << slab.status().to_string();
    dtype = (*slab)->dtype;
    values.resize((*slab)->size / dtype_size(dtype));
    for (const auto& part : (*slab)->parts) {
      auto at = (*ckpt)->locate(part.bytes);
      ASSERT_TRUE(at.has_value()) << key << " is not stored as a view";
      where.push_back({at->first, at->second, part.begin, part.bytes.size()});
      to_f32(dtype, part.bytes.data(), values.data() + part.begin / dtype_size(dtype), part.bytes.size() / dtype_size(dtype));
    }
  }
  edit(values);
  std::vector<std::byte> bytes(values.size() * dtype_size(dtype));
  from_f32(dtype, values.data(), bytes.data(), values.size());
  for (const Location& l : where) {
    int fd = ::open(l.file.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << l.file;
    ASSERT_EQ(::pwrite(fd, bytes.data() + l.begin, l.size, static_cast<off_t>(l.offset)), static_cast<ssize_t>(l.size));
    ::close(fd);
  }
}

namespace {

using torch::PyPtr;
using torch::PyValue;
using K = PyValue::Kind;

PyPtr rebuild(const PyPtr& v, const std::function<PyPtr(const PyPtr&)>& replace) {
  auto copy = std::make_shared<PyValue>(*v);
  for (PyPtr& item : copy->items) item = rebuild(item, replace);
  return replace(copy);
}

PyPtr load_metadata(const std::filesystem::path& dir) {
  const std::string bytes = read_bytes(dir / ".metadata");
  torch::PickleOptions options{[](const std::string&) { return true; }};
  auto root = torch::pickle_loads(std::as_bytes(std::span(bytes.data(), bytes.size())), options, ".metadata");
  EXPECT_TRUE(root.ok()) << root.status().to_string();
  return root.ok() ? *root : torch::py_none();
}

// The dataclass state dict of an object node, or null.
const PyValue* state_of(const PyValue& v) { return v.is(K::kObject) && v.items[2]->is(K::kDict) ? v.items[2].get() : nullptr; }

bool is_index_of(const PyValue& v, const std::string& fqn) {
  const PyValue* s = state_of(v);
  PyPtr name = s ? s->get("fqn") : nullptr;
  return name && name->is(K::kStr) && name->s == fqn;
}

}  // namespace

void edit_dcp_metadata(const std::filesystem::path& dir, const std::function<PyPtr(const PyPtr&)>& replace) {
  PyPtr root = rebuild(load_metadata(dir), replace);
  write_bytes(dir / ".metadata", torch::pickle_dumps(*root));
}

PyPtr torch_size(const std::vector<int64_t>& dims) {
  std::vector<PyPtr> items;
  for (int64_t d : dims) items.push_back(torch::py_int(d));
  return torch::py_call(torch::py_global("torch", "Size"), {torch::py_tuple(std::move(items))});
}

bool is_torch_size(const PyValue& v, const std::vector<int64_t>& dims) {
  if (!v.is(K::kCall) || v.items[0]->global_name() != "torch.Size" || v.items[1]->items.size() != 1) return false;
  const PyValue& t = *v.items[1]->items[0];
  if (t.items.size() != dims.size()) return false;
  for (size_t d = 0; d < dims.size(); ++d)
    if (!t.items[d]->is(K::kInt) || t.items[d]->i != dims[d]) return false;
  return true;
}

void move_dcp_chunk(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& from,
                    const std::vector<int64_t>& to) {
  auto iter = dcp::resolve_iteration_dir(checkpoint);
  ASSERT_TRUE(iter.ok()) << iter.status().to_string();
  auto move = [&](const PyPtr& v) { return is_torch_size(*v, from) ? torch_size(to) : v; };
  int moved = 0;
  edit_dcp_metadata(*iter, [&](const PyPtr& v) -> PyPtr {
    if (is_index_of(*v, key)) {  // storage_data's MetadataIndex of the chunk
      PyPtr offset = v->items[2]->get("offset");
      if (!offset || !is_torch_size(*offset, from)) return v;
      ++moved;
      return rebuild(v, move);
    }
    if (!v->is(K::kDict)) return v;
    auto out = std::make_shared<PyValue>(*v);
    for (size_t k = 0; k + 1 < out->items.size(); k += 2)
      if (out->items[k]->is(K::kStr) && out->items[k]->s == key && state_of(*out->items[k + 1]))  // state_dict_metadata[key]
        out->items[k + 1] = rebuild(out->items[k + 1], move);
    return out;
  });
  EXPECT_EQ(moved, 1) << key << " has no chunk at the given offsets";
}

void replace_mcore_tensor(const std::filesystem::path& checkpoint, const std::string& key, DType dtype, const Shape& shape,
                          const std::vector<float>& values) {
  auto iter = dcp::resolve_iteration_dir(checkpoint);
  ASSERT_TRUE(iter.ok()) << iter.status().to_string();
  // The new tensor, written by our DCP writer into a scratch directory, its file moved into the checkpoint.
  const std::filesystem::path scratch = *iter / ".replace";
  std::filesystem::create_directories(scratch);
  auto bytes = std::make_shared<std::vector<std::byte>>(values.size() * dtype_size(dtype));
  from_f32(dtype, values.data(), bytes->data(), values.size());
  dcp::TensorToWrite t{key, dtype, shape, {}};
  t.chunks.push_back({std::vector<int64_t>(shape.size(), 0), shape, [bytes](uint64_t offset, std::span<std::byte> out) {
                        std::memcpy(out.data(), bytes->data() + offset, out.size());
                        return Status();
                      }});
  ASSERT_TRUE(dcp::write_dcp(scratch, {t}, {}, {}).ok());
  // A file name no earlier replacement took, so several tensors can be replaced in one checkpoint.
  std::string file;
  for (int n = 0; file.empty() || std::filesystem::exists(*iter / file); ++n) file = "__77_" + std::to_string(n) + ".distcp";
  std::filesystem::rename(scratch / "__0_0.distcp", *iter / file);
  PyPtr fresh = load_metadata(scratch);
  std::filesystem::remove_all(scratch);
  // From the scratch .metadata: the tensor's TensorStorageMetadata and its storage_data pairs (file renamed).
  const PyValue* fs = state_of(*fresh);
  ASSERT_TRUE(fs);
  PyPtr entry = fs->get("state_dict_metadata")->get(key);
  ASSERT_TRUE(entry);
  std::vector<PyPtr> storage;
  const PyValue& sd = *fs->get("storage_data");
  for (size_t k = 0; k + 1 < sd.items.size(); k += 2) {
    auto info = std::make_shared<PyValue>(*sd.items[k + 1]);
    auto state = std::make_shared<PyValue>(*info->items[2]);
    for (size_t f = 0; f + 1 < state->items.size(); f += 2)
      if (state->items[f]->s == "relative_path") state->items[f + 1] = torch::py_str(file);
    info->items[2] = state;
    storage.push_back(sd.items[k]);
    storage.push_back(info);
  }
  edit_dcp_metadata(*iter, [&](const PyPtr& v) -> PyPtr {
    if (!v->is(K::kDict)) return v;
    auto out = std::make_shared<PyValue>(*v);
    out->items.clear();
    bool storage_dict = false;
    for (size_t k = 0; k + 1 < v->items.size(); k += 2) {
      const PyPtr &name = v->items[k], &value = v->items[k + 1];
      if (name->is(K::kStr) && name->s == key && state_of(*value)) {  // state_dict_metadata[key]
        out->items.push_back(name);
        out->items.push_back(entry);
        continue;
      }
      if (name->is(K::kObject)) storage_dict = true;
      if (is_index_of(*name, key)) continue;  // the old chunks' storage entries
      out->items.push_back(name);
      out->items.push_back(value);
    }
    if (storage_dict) out->items.insert(out->items.end(), storage.begin(), storage.end());
    return out;
  });
}

void rename_mcore_keys(const std::filesystem::path& checkpoint, const std::function<std::string(const std::string&)>& rename) {
  auto iter = dcp::resolve_iteration_dir(checkpoint);
  ASSERT_TRUE(iter.ok()) << iter.status().to_string();
  // state_dict_metadata is keyed by the name; storage_data by MetadataIndex objects holding it as `fqn`.
  auto renamed_dict = [&](const PyPtr& dict) {
    auto out = std::make_shared<PyValue>(*dict);
    out->items.clear();
    for (size_t k = 0; k + 1 < dict->items.size(); k += 2) {
      PyPtr name = dict->items[k];
      if (name->is(K::kStr)) {
        const std::string to = rename(name->s);
        if (to.empty()) continue;
        name = torch::py_str(to);
      } else if (const PyValue* st = state_of(*name); st && st->get("fqn")) {
        const std::string to = rename(st->get("fqn")->s);
        if (to.empty()) continue;
        auto index = std::make_shared<PyValue>(*name);
        auto state = std::make_shared<PyValue>(*name->items[2]);
        for (size_t f = 0; f + 1 < state->items.size(); f += 2)
          if (state->items[f]->s == "fqn") state->items[f + 1] = torch::py_str(to);
        index->items[2] = state;
        name = index;
      }
      out->items.push_back(name);
      out->items.push_back(dict->items[k + 1]);
    }
    return PyPtr(out);
  };
  edit_dcp_metadata(*iter, [&](const PyPtr& v) -> PyPtr {
    const PyValue* st = state_of(*v);
    if (!st || !st->get("state_dict_metadata")) return v;
    auto out = std::make_shared<PyValue>(*v);
    auto state = std::make_shared<PyValue>(*v->items[2]);
    for (size_t f = 0; f + 1 < state->items.size(); f += 2)
      if (state->items[f]->s == "state_dict_metadata" || state->items[f]->s == "storage_data")
        state->items[f + 1] = renamed_dict(state->items[f + 1]);
    out->items[2] = state;
    return out;
  });
}

std::vector<float> read_mcore_tensor(const std::filesystem::path& checkpoint, const std::string& key) {
  auto ckpt = dcp::Checkpoint::open(checkpoint);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().to_string();
  if (!ckpt.ok()) return {};
  const dcp::TensorEntry* entry = (*ckpt)->find(key);
  EXPECT_TRUE(entry) << key;
  if (!entry) return {};
  auto slab = (*ckpt)->read_slab(key, {}, {}, entry->shape);
  EXPECT_TRUE(slab.ok()) << slab.status().to_string();
  if (!slab.ok()) return {};
  std::vector<float> values((*slab)->size / dtype_size((*slab)->dtype));
  (void)(*slab)->visit(0, (*slab)->size, [&](std::span<const std::byte> src, uint64_t at) {
    to_f32((*slab)->dtype, src.data(), values.data() + at / dtype_size((*slab)->dtype), src.size() / dtype_size((*slab)->dtype));
    return Status();
  });
  return values;
}

}  // namespace g4::testing
