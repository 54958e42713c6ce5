#include "checkpoint_edit.h"

#include <cstring>

#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::testing {
namespace fs = std::filesystem;

void copy_checkpoint(const fs::path& src, const fs::path& dst, const std::function<bool(Tensor&)>& edit,
                     std::vector<Tensor> extra, uint64_t max_shard) {
  auto set = SafetensorsSet::open_dir(src);
  ASSERT_OK(set);
  std::vector<Tensor> tensors;
  for (const auto& [name, e] : set->tensors()) {
    auto d = set->data(e);
    Tensor t{{name, e.info->dtype, e.info->shape}, std::string(reinterpret_cast<const char*>(d.data()), d.size())};
    if (edit(t)) tensors.push_back(std::move(t));
  }
  for (auto& t : extra) tensors.push_back(std::move(t));
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  fs::create_directories(dst);
  SafetensorsWriteOptions o;
  o.max_shard_bytes = max_shard;
  ASSERT_OK(write_safetensors_checkpoint(dst, specs, [&](size_t i, uint64_t off, std::span<std::byte> out) {
    std::memcpy(out.data(), tensors[i].bytes.data() + off, out.size());
    return Status();
  }, o));
  fs::copy_file(src / "config.json", dst / "config.json");
}

}  // namespace g4::testing
