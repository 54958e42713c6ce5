#include "runtime/torch/torch_save.h"

#include <cstring>

#include "runtime/torch/pickle_reader.h"
#include "runtime/torch/pickle_writer.h"
#include "runtime/torch/zip_writer.h"

namespace g4::torch {
namespace {

struct StorageName {
  DType dtype;
  const char* name;
};
constexpr StorageName kStorages[] = {
    {DType::kF32, "FloatStorage"},  {DType::kF64, "DoubleStorage"}, {DType::kF16, "HalfStorage"},
    {DType::kBF16, "BFloat16Storage"}, {DType::kI64, "LongStorage"}, {DType::kI32, "IntStorage"},
    {DType::kI16, "ShortStorage"},  {DType::kI8, "CharStorage"},    {DType::kU8, "ByteStorage"},
    {DType::kBool, "BoolStorage"},
};

PyPtr int_tuple(const std::vector<int64_t>& v) {
  std::vector<PyPtr> items;
  for (int64_t x : v) items.push_back(py_int(x));
  return py_tuple(std::move(items));
}

Result<std::vector<int64_t>> ints(const PyValue& t, std::string_view what, const std::string& where) {
  if (!t.is(PyValue::Kind::kTuple)) return Status::corruption(where + ": tensor " + std::string(what) + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& item : t.items) {
    if (!item->is(PyValue::Kind::kInt)) return Status::corruption(where + ": tensor " + std::string(what) + " holds a non-integer");
    out.push_back(item->i);
  }
  return out;
}

}  // namespace

std::string storage_class(DType dtype) {
  for (const auto& s : kStorages)
    if (s.dtype == dtype) return s.name;
  return "";
}

PyPtr TorchSaveWriter::tensor(DType dtype, const Shape& shape, Producer produce) {
  const uint64_t numel = checked_numel(shape).value_or(0);
  const std::string key = std::to_string(storages_.size());
  storages_.push_back({numel * dtype_size(dtype), std::move(produce)});
  std::vector<int64_t> stride(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) stride[d - 1] = stride[d] * shape[d];
  PyPtr storage_id = py_tuple({py_str("storage"), py_global("torch", storage_class(dtype)), py_str(key), py_str("cpu"),
                               py_int(static_cast<int64_t>(numel))});
  PyPtr hooks = py_call(py_global("collections", "OrderedDict"), {});
  return py_call(py_global("torch._utils", "_rebuild_tensor_v2"),
                 {py_persistent_id(storage_id), py_int(0), int_tuple(shape), int_tuple(stride), py_bool(false), hooks});
}

PyPtr TorchSaveWriter::tensor(DType dtype, const Shape& shape, std::span<const std::byte> data) {
  return tensor(dtype, shape, [data](uint64_t off, std::span<std::byte> out) {
    std::memcpy(out.data(), data.data() + off, out.size());
    return Status();
  });
}

Status TorchSaveWriter::write(const std::filesystem::path& path, const PyValue& root, const std::string& archive) const {
  G4_ASSIGN_OR_RETURN(ZipWriter zip, ZipWriter::create(path));
  return write_into(zip, root, archive);
}

Status TorchSaveWriter::write_into(ZipWriter& zip, const PyValue& root, const std::string& archive) const {
  G4_RETURN_IF_ERROR(zip.add(archive + "/data.pkl", pickle_dumps(root)));
  G4_RETURN_IF_ERROR(zip.add(archive + "/byteorder", std::string_view("little")));
  for (size_t k = 0; k < storages_.size(); ++k)
    G4_RETURN_IF_ERROR(zip.add_streamed(archive + "/data/" + std::to_string(k), storages_[k].bytes, storages_[k].produce));
  G4_RETURN_IF_ERROR(zip.add(archive + "/version", std::string_view("3\n")));
  return zip.finish();
}

Result<std::pair<ZipArchive, PyPtr>> parse_torch_bytes(std::span<const std::byte> bytes, std::string_view where_view) {
  const std::string where(where_view);
  G4_ASSIGN_OR_RETURN(ZipArchive zip, read_zip(bytes, where));
  const auto* pkl = zip.find("data.pkl");
  if (!pkl) return Status::corruption(where + ": not a torch.save file (no data.pkl)");
  if (const auto* order = zip.find("byteorder"); order && std::string_view(reinterpret_cast<const char*>(order->data()), order->size()) != "little")
    return Status::not_supported(where + ": big-endian torch.save files are not supported");
  PickleOptions options{torch_weights_only_global};
  G4_ASSIGN_OR_RETURN(PyPtr root, pickle_loads(*pkl, options, where + ": data.pkl"));
  return std::make_pair(std::move(zip), std::move(root));
}

Result<TorchFile> load_torch_file(const std::filesystem::path& path) {
  G4_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  G4_ASSIGN_OR_RETURN(auto parsed, parse_torch_bytes(map.bytes(), path.string()));
  return TorchFile{std::move(map), std::move(parsed.first), std::move(parsed.second), path.string()};
}

bool is_tensor_node(const PyValue& node) {
  if (!node.is(PyValue::Kind::kCall)) return false;
  const std::string g = node.items[0]->global_name();
  return g == "torch._utils._rebuild_tensor_v2" || g == "torch._utils._rebuild_parameter";
}

Result<TensorView> tensor_view(const ZipArchive& archive, const PyValue& node_in, std::string_view where_view) {
  const std::string where(where_view);
  const PyValue* node = &node_in;
  if (node->is(PyValue::Kind::kCall) && node->items[0]->global_name() == "torch._utils._rebuild_parameter") {
    const auto& args = node->items[1]->items;
    if (args.empty()) return Status::corruption(where + ": _rebuild_parameter without a tensor");
    node = args[0].get();
  }
  if (!node->is(PyValue::Kind::kCall) || node->items[0]->global_name() != "torch._utils._rebuild_tensor_v2")
    return Status::not_supported(where + ": not a plain tensor (_rebuild_tensor_v2)");
  const auto& args = node->items[1]->items;
  if (args.size() < 4 || !args[0]->is(PyValue::Kind::kPersistentId))
    return Status::corruption(where + ": malformed _rebuild_tensor_v2 arguments");
  const PyValue& id = *args[0]->items[0];
  if (!id.is(PyValue::Kind::kTuple) || id.items.size() != 5 || !id.items[0]->is(PyValue::Kind::kStr) ||
      id.items[0]->s != "storage" || !id.items[1]->is(PyValue::Kind::kGlobal) || !id.items[2]->is(PyValue::Kind::kStr))
    return Status::corruption(where + ": malformed storage id");
  TensorView v;
  const std::string cls = id.items[1]->global_name();
  bool known = false;
  for (const auto& s : kStorages)
    if (cls == std::string("torch.") + s.name) v.dtype = s.dtype, known = true;
  if (!known) return Status::not_supported(where + ": storage type '" + cls + "'");
  const auto* record = archive.find("data/" + id.items[2]->s);
  if (!record) return Status::corruption(where + ": storage record 'data/" + id.items[2]->s + "' is missing");
  if (!args[1]->is(PyValue::Kind::kInt) || args[1]->i < 0) return Status::corruption(where + ": bad storage offset");
  const uint64_t offset = static_cast<uint64_t>(args[1]->i);
  G4_ASSIGN_OR_RETURN(std::vector<int64_t> size, ints(*args[2], "size", where));
  G4_ASSIGN_OR_RETURN(std::vector<int64_t> stride, ints(*args[3], "stride", where));
  if (size.size() != stride.size()) return Status::corruption(where + ": size and stride ranks differ");
  auto numel = checked_numel(size);
  if (!numel) return Status::corruption(where + ": tensor size overflows");
  int64_t expect = 1;
  for (size_t d = size.size(); d-- > 0;) {
    if (size[d] != 1 && stride[d] != expect) return Status::not_supported(where + ": non-contiguous tensor");
    expect *= size[d];
  }
  const uint64_t elem = dtype_size(v.dtype);
  if (offset > record->size() / elem || *numel > record->size() / elem - offset)
    return Status::corruption(where + ": tensor runs past its storage");
  v.shape = size;
  v.data = record->subspan(offset * elem, *numel * elem);
  return v;
}

}  // namespace g4::torch
