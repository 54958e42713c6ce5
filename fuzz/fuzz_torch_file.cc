// libFuzzer target: any bytes given to the torch.save reader (zip + safe pickle) must parse or give a
// Status, never crash, read out of bounds or run code; accepted tensors must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "runtime/torch/torch_save.h"

using namespace g4::torch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = parse_torch_bytes(bytes, "fuzz.pt");
  if (!parsed.ok()) return 0;
  std::function<void(const PyValue&)> walk = [&](const PyValue& v) {
    if (is_tensor_node(v)) {
      auto t = tensor_view(parsed->first, v, "t");
      if (t.ok() && !t->data.empty() &&
          (t->data.data() < bytes.data() || t->data.data() + t->data.size() > bytes.data() + bytes.size()))
        __builtin_trap();
    }
    for (const auto& item : v.items) walk(*item);
  };
  walk(*parsed->second);
  return 0;
}
