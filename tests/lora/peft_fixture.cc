#include "lora/peft_fixture.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "runtime/status.h"

namespace g4::testing {
namespace fs = std::filesystem;

void write_float_tensors(const fs::path& file, const std::vector<FloatTensor>& tensors) {
  std::vector<TensorSpec> specs;
  std::vector<std::vector<std::byte>> bytes;
  for (const FloatTensor& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    bytes.emplace_back(t.values.size() * dtype_size(t.dtype));
    from_f32(t.dtype, t.values.data(), bytes.back().data(), t.values.size());
    ASSERT_EQ(bytes.back().size(), specs.back().nbytes()) << t.name;
  }
  TensorFill fill = [&](size_t i, uint64_t offset, std::span<std::byte> out) -> Status {
    std::memcpy(out.data(), bytes[i].data() + offset, out.size());
    return {};
  };
  fs::create_directories(file.parent_path());
  const Status s = write_safetensors_file(file, specs, fill, {});
  ASSERT_TRUE(s.ok()) << s.to_string();
}

nlohmann::json peft_config(int64_t r, double alpha) {
  return {{"peft_type", "LORA"},     {"r", r},                   {"lora_alpha", alpha},       {"bias", "none"},
          {"fan_in_fan_out", false}, {"use_dora", false},        {"lora_bias", false},        {"use_rslora", false},
          {"modules_to_save", nullptr}, {"rank_pattern", nlohmann::json::object()}, {"alpha_pattern", nlohmann::json::object()},
          {"lora_dropout", 0.0},     {"init_lora_weights", true}, {"target_modules", nullptr}, {"target_parameters", nullptr},
          {"layers_to_transform", nullptr}, {"layer_replication", nullptr}, {"task_type", nullptr}, {"peft_version", "0.21.2"}};
}

void write_peft_adapter(const fs::path& dir, const nlohmann::json& config, const std::vector<FloatTensor>& tensors) {
  fs::create_directories(dir);
  std::ofstream(dir / "adapter_config.json") << config.dump(2);
  write_float_tensors(dir / "adapter_model.safetensors", tensors);
}

std::vector<float> test_values(uint64_t seed, size_t n, float scale) {
  std::vector<float> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 12345;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = scale * (static_cast<float>(static_cast<int64_t>(x % 2001) - 1000) / 1000.0f);
  }
  return v;
}

}  // namespace g4::testing
