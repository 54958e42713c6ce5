// libFuzzer target: any run_config.yaml text must parse (PyYAML typing, bounded depth and alias expansion) or
// give a Status, and a parsed model section must become an HF config or a Status; a config rebuilt from it must
// be one gemma4::parse_config_json accepts or refuses with a Status, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "convert/provider_config.h"
#include "gemma4/config.h"
#include "runtime/yaml_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = g4::parse_yaml(text, "fuzz/run_config.yaml");
  if (!doc.ok()) return 0;
  (void)doc->dump();  // the value is bounded: dumping it must not recurse past the depth limit
  const g4::dcp::Metadata no_tensors;
  auto recovered = g4::convert::hf_config_from_run_config(*doc, "fuzz/run_config.yaml", no_tensors);
  if (!recovered.ok()) return 0;
  auto config = g4::gemma4::parse_config_json(recovered->hf, "fuzz/rebuilt.json");
  (void)config;
  return 0;
}
