// libFuzzer target: any config.json text must parse into a validated ModelConfig or give a Status;
// a config that parses must also survive writing it back out and parsing that again.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gemma4/config.h"
#include "gemma4/hf_tensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = g4::gemma4::parse_config(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  // Keep the inventory small: huge but valid dims are legal configs, not worth materialising names for.
  if (config->text.num_hidden_layers > 4096) return 0;
  (void)g4::gemma4::hf_text_tensors(*config);
  auto again = g4::gemma4::parse_config_json(g4::gemma4::to_hf_json(*config), "fuzz/rewritten.json");
  if (!again.ok()) __builtin_trap();  // what we write must always read back
  return 0;
}
