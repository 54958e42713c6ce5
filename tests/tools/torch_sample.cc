// Test tool for the Python oracle suite: `torch_sample write OUT.pt` writes a torch.save file with our
// writer (every dtype we emit, nested containers, a Namespace); `torch_sample dump IN.pt` prints what our
// safe reader sees as JSON (tensors as dtype, shape and FNV-1a hash of their bytes); `torch_sample dcp DIR`
// prints what our DCP reader sees: every tensor's chunks with their hashes, and the byte items;
// `torch_sample dcp-write DIR` writes a DCP directory with our writer (values i·0.5 in row-major order, stacked
// per-layer chunks, a column-split f32 tensor, `_extra_state` byte items) for torch and megatron-core to read.
#include <cstdio>
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>

#include "runtime/dcp/dcp_metadata.h"
#include "runtime/dcp/dcp_writer.h"
#include "runtime/torch/torch_save.h"

using namespace g4;
using namespace g4::torch;
using json = nlohmann::json;

namespace {

uint64_t fnv1a(std::span<const std::byte> b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte c : b) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

json to_json(const ZipArchive& zip, const PyValue& v) {
  using K = PyValue::Kind;
  if (is_tensor_node(v)) {
    auto t = tensor_view(zip, v, "tensor");
    if (!t.ok()) return {{"error", t.status().message()}};
    return {{"tensor", dtype_name(t->dtype)}, {"shape", t->shape}, {"fnv1a", std::to_string(fnv1a(t->data))}};
  }
  switch (v.kind) {
    case K::kNone: return nullptr;
    case K::kBool: return v.b;
    case K::kInt: return v.i;
    case K::kFloat: return v.f;
    case K::kStr: return v.s;
    case K::kBytes: return {{"bytes", v.s.size()}};
    case K::kTuple: case K::kList: {
      json a = json::array();
      for (const auto& item : v.items) a.push_back(to_json(zip, *item));
      return a;
    }
    case K::kDict: {
      json o = json::object();
      for (size_t k = 0; k + 1 < v.items.size(); k += 2)
        o[v.items[k]->is(K::kStr) ? v.items[k]->s : v.items[k]->is(K::kInt) ? std::to_string(v.items[k]->i) : "?"] = to_json(zip, *v.items[k + 1]);
      return o;
    }
    case K::kCall: {
      json o = {{"call", v.items[0]->global_name()}, {"args", to_json(zip, *v.items[1])}};
      if (v.items.size() > 2) {  // OrderedDict items (and any BUILD state) after (callable, args)
        json items = json::object();
        for (size_t k = 2; k + 1 < v.items.size(); k += 2)
          items[v.items[k]->is(K::kStr) ? v.items[k]->s : "?"] = to_json(zip, *v.items[k + 1]);
        o["items"] = items;
      }
      return o;
    }
    case K::kObject: return {{"object", v.items[0]->global_name()}, {"state", to_json(zip, *v.items[2])}};
    case K::kGlobal: return {{"global", v.global_name()}};
    case K::kPersistentId: return {{"persistent_id", to_json(zip, *v.items[0])}};
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: torch_sample write|dump FILE\n");
    return 2;
  }
  const std::string mode = argv[1], path = argv[2];
  if (mode == "write") {
    static std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, 1e-30f, -7.0f};
    static std::vector<uint16_t> bf16 = {0x3f80, 0xc020, 0x4050, 0x0000, 0x7f80, 0xff80, 0x3e80, 0x1234};
    static std::vector<int64_t> i64 = {-3, 1ll << 40, 7};
    static std::vector<float> one = {42.0f};
    auto span = [](const auto& v) { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(v[0])); };
    TorchSaveWriter w;
    PyPtr root = py_dict({
        {py_str("f32"), w.tensor(DType::kF32, {2, 3}, span(f32))},
        {py_str("bf16"), w.tensor(DType::kBF16, {2, 2, 2}, span(bf16))},
        {py_str("i64"), w.tensor(DType::kI64, {3}, span(i64))},
        {py_str("scalar"), w.tensor(DType::kF32, {}, span(one))},
        {py_str("nested"), py_list({py_int(-1), py_float(0.5), py_str("ü"), py_none(), py_tuple({py_bool(true), py_int(1ll << 50)})})},
        {py_str("blob"), py_bytes(std::string("\x00\x80\xff", 3))},
        {py_str("args"), py_object(py_global("argparse", "Namespace"), {}, py_dict({{py_str("tensor_model_parallel_size"), py_int(1)}}))},
        {py_str("dtype"), py_global("torch", "bfloat16")},
    });
    Status s = w.write(path, *root, "archive");
    if (!s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return 1; }
    return 0;
  }
  if (mode == "dcp-write") {
    // Element k of every tensor holds k * 0.5 (k in global row-major order), so a reader can check placement.
    auto fill_global = [](DType dt, Shape global, std::vector<int64_t> off, Shape sizes) {
      return [=](uint64_t offset, std::span<std::byte> out) -> Status {
        const size_t es = dtype_size(dt);
        for (size_t b = 0; b < out.size(); b += es) {
          uint64_t local = (offset + b) / es, global_index = 0;
          for (size_t d = 0; d < sizes.size(); ++d) {
            uint64_t inner = 1;
            for (size_t e = d + 1; e < sizes.size(); ++e) inner *= sizes[e];
            uint64_t outer = 1;
            for (size_t e = d + 1; e < global.size(); ++e) outer *= global[e];
            global_index += (local / inner % sizes[d] + off[d]) * outer;
          }
          float v = static_cast<float>(global_index) * 0.5f;
          if (dt == DType::kBF16) {
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            uint16_t h = static_cast<uint16_t>(bits >> 16);
            std::memcpy(out.data() + b, &h, 2);
          } else {
            std::memcpy(out.data() + b, &v, 4);
          }
        }
        return Status();
      };
    };
    std::vector<dcp::TensorToWrite> tensors;
    dcp::TensorToWrite stacked{"decoder.layers.mlp.linear_fc1.weight", DType::kBF16, {3, 4, 5}, {}};
    for (int64_t l = 0; l < 3; ++l)
      stacked.chunks.push_back({{l, 0, 0}, {1, 4, 5}, fill_global(DType::kBF16, {3, 4, 5}, {l, 0, 0}, {1, 4, 5})});
    tensors.push_back(stacked);
    dcp::TensorToWrite split{"embedding.word_embeddings.weight", DType::kF32, {6, 4}, {}};
    for (int64_t c = 0; c < 2; ++c)
      split.chunks.push_back({{0, 2 * c}, {6, 2}, fill_global(DType::kF32, {6, 4}, {0, 2 * c}, {6, 2})});
    tensors.push_back(split);
    std::vector<dcp::BytesToWrite> bytes = {
        {"decoder.layers.mlp.linear_fc1._extra_state/shard_0_1", dcp::write_empty_extra_state},
        {"decoder.layers.mlp.linear_fc2._extra_state/shard_0_1", dcp::write_none_extra_state}};
    std::filesystem::create_directories(path);
    Status s = dcp::write_dcp(path, tensors, bytes, {2, nullptr, nullptr});
    if (!s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return 1; }
    return 0;
  }
  if (mode == "dcp") {
    auto md = dcp::read_metadata(path);
    if (!md.ok()) { std::fprintf(stderr, "%s\n", md.status().message().c_str()); return 1; }
    std::map<std::string, MappedFile> maps;
    json out = {{"tensors", json::object()}, {"bytes", json::array()}};
    for (const auto& [fqn, t] : md->tensors) {
      json chunks = json::array();
      for (const auto& c : t.chunks) {
        auto v = dcp::read_chunk(path, c, maps, fqn);
        if (!v.ok()) { std::fprintf(stderr, "%s\n", v.status().message().c_str()); return 1; }
        chunks.push_back({{"offsets", c.offsets}, {"sizes", c.sizes}, {"fnv1a", std::to_string(fnv1a(v->data))}});
      }
      out["tensors"][fqn] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"chunks", chunks}};
    }
    for (const auto& [fqn, loc] : md->byte_items) out["bytes"].push_back(fqn);
    std::cout << out.dump() << "\n";
    return 0;
  }
  auto file = load_torch_file(path);
  if (!file.ok()) { std::fprintf(stderr, "%s\n", file.status().message().c_str()); return 1; }
  std::cout << to_json(file->archive, *file->root).dump() << "\n";
  return 0;
}
