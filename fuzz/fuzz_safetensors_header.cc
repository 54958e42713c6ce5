// libFuzzer target: any byte string given to the safetensors parser must produce a header or a
// kCorruption Status, never a crash, an out-of-bounds read (ASan) or undefined behaviour (UBSan).
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto header = g4::parse_safetensors(bytes, "fuzz.safetensors");
  if (header.ok()) {
    // Every accepted tensor must lie inside the input.
    for (const auto& t : header->tensors)
      if (header->data_start + t.end > size) __builtin_trap();
  }
  return 0;
}
