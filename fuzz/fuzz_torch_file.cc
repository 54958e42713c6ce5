// libFuzzer target: any bytes given to the torch.save reader (zip + safe pickle) must parse or give a
// Status, never crash, read out of bounds or run code; accepted tensors must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_set>
#include <vector>

#include "runtime/torch/torch_save.h"

using namespace g4::torch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = parse_torch_bytes(bytes, "fuzz.pt");
  if (!parsed.ok()) return 0;
  // Every distinct node once, iteratively: values are acyclic and at most kMaxPickleDepth deep, but a memo lets
  // one node be shared many times, so a naive tree walk could take exponential time.
  std::vector<const PyValue*> todo = {parsed->second.get()};
  std::unordered_set<const PyValue*> seen = {parsed->second.get()};
  while (!todo.empty()) {
    const PyValue& v = *todo.back();
    todo.pop_back();
    if (is_tensor_node(v)) {
      auto t = tensor_view(parsed->first, v, "t");
      if (t.ok() && !t->data.empty() &&
          (t->data.data() < bytes.data() || t->data.data() + t->data.size() > bytes.data() + bytes.size()))
        __builtin_trap();
    }
    for (const auto& item : v.items)
      if (seen.insert(item.get()).second) todo.push_back(item.get());
  }
  return 0;
}
