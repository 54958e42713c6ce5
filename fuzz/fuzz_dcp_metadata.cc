// libFuzzer target: any bytes given as a DCP `.metadata` (pickle with every class kept as data) must parse or
// give a Status, never crash, read out of bounds or run code; accepted chunks must lie inside their tensor.
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/dcp/dcp_metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto md = g4::dcp::parse_metadata(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), ".metadata");
  if (!md.ok()) return 0;
  for (const auto& [fqn, t] : md->tensors)
    for (const auto& c : t.chunks)
      if (c.offsets.size() != t.shape.size() || c.sizes.size() != t.shape.size()) __builtin_trap();
  return 0;
}
