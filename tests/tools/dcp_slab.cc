// Test tool for the Python oracle suite: `dcp_slab DIR` prints, as JSON, what dcp::Checkpoint::read_slab (the
// reader every command uses) returns for each tensor of a DCP directory: the whole tensor, every position on
// its first axis as a stacked axis, and every position on its first two axes, each as the hex of its bytes.
// Errors go to stderr with exit 2, one line.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "runtime/dcp/checkpoint.h"

using namespace g4;

namespace {

std::string hex(const dcp::Slab& slab) {
  std::vector<std::byte> bytes(slab.size);
  slab.copy(0, bytes);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::byte b : bytes) out += digits[static_cast<uint8_t>(b) >> 4], out += digits[static_cast<uint8_t>(b) & 15];
  return out;
}

// Slabs at every position of the first `lead` axes, in row-major order.
Result<nlohmann::json> positions(const dcp::Checkpoint& ckpt, const dcp::TensorEntry& e, size_t lead) {
  nlohmann::json out = nlohmann::json::array();
  const std::vector<int64_t> axes(e.shape.begin(), e.shape.begin() + static_cast<std::ptrdiff_t>(lead));
  const Shape own(e.shape.begin() + static_cast<std::ptrdiff_t>(lead), e.shape.end());
  const uint64_t count = checked_numel(axes).value_or(0);
  for (uint64_t p = 0; p < count; ++p) {
    std::vector<int64_t> index(lead);
    for (size_t d = lead, q = p; d-- > 0;) index[d] = static_cast<int64_t>(q % axes[d]), q /= axes[d];
    G4_ASSIGN_OR_RETURN(auto slab, ckpt.read_slab(e.fqn, index, axes, own));
    out.push_back(hex(*slab));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: dcp_slab DIR\n");
    return 2;
  }
  auto run = [&]() -> Result<nlohmann::json> {
    G4_ASSIGN_OR_RETURN(auto ckpt, dcp::Checkpoint::open(argv[1]));
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, e] : ckpt->metadata().tensors) {
      G4_ASSIGN_OR_RETURN(auto whole, ckpt->read_slab(key, {}, {}, e.shape));
      nlohmann::json t = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"chunks", e.chunks.size()}, {"whole", hex(*whole)}};
      for (size_t lead = 1; lead <= std::min<size_t>(2, e.shape.size()); ++lead) {
        G4_ASSIGN_OR_RETURN(t["lead" + std::to_string(lead)], positions(*ckpt, e, lead));
      }
      out[key] = t;
    }
    return out;
  };
  auto out = run();
  if (!out.ok()) {
    std::fprintf(stderr, "%s\n", out.status().message().c_str());
    return 2;
  }
  std::cout << out->dump() << "\n";
  return 0;
}
