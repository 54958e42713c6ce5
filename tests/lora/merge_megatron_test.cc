// lora-merge end to end on Megatron-Bridge adapter checkpoints (written by lora_synth): exported to PEFT on the
// way (through lora-export's public API), the merge equals the merge of that PEFT export, tensor for tensor.
#include <cstdlib>

#include "lora/lora_merge.h"
#include "lora/peft_export.h"
#include "runtime/safetensors_set.h"
#include "test_support.h"

namespace g4::lora {
namespace {
namespace fs = std::filesystem;

using testing::ScratchDir;

fs::path tiny(const std::string& name) { return testing::source_dir() / "testdata" / name; }

std::string bytes_of(const SafetensorsSet& set, const std::string& name) {
  const SafetensorsSet::Entry* e = set.find(name);
  if (!e) return "<missing " + name + ">";
  std::span<const std::byte> b = set.data(*e);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

Result<LoraMergeSummary> merge(const fs::path& adapter, const fs::path& base, const fs::path& out) {
  LoraMergeOptions o;
  o.adapter = adapter;
  o.base = base;
  o.out = out;
  o.threads = 2;
  return lora_merge(o);
}

// lora_synth (the Megatron-Bridge adapter generator beside g4convert) writes an adapter-only checkpoint.
void write_megatron_adapter(const fs::path& base, const fs::path& out, const std::string& targets) {
  const fs::path tool = fs::path(G4_BINARY).parent_path() / "lora_synth";
  const std::string cmd = tool.string() + " --base " + base.string() + " --out " + out.string() +
                          " --rank 2 --alpha 6 --dtype bf16 --targets " + targets + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(LoraMerge, MegatronAdapterIsExportedOnTheWayAndMergesAsItsPeftExport) {
  for (const auto& [model, targets] : std::vector<std::pair<std::string, std::string>>{
           {"tiny-e4b", "linear_qkv,linear_proj,linear_fc1,linear_fc2"}, {"tiny-26b-a4b", "linear_qkv,linear_fc1,linear_fc2"}}) {
    ScratchDir dir;
    write_megatron_adapter(tiny(model), dir / "mg", targets);
    PeftExportOptions to_peft;
    to_peft.adapter = dir / "mg";
    to_peft.out = dir / "peft";
    to_peft.reference_hf = tiny(model);
    ASSERT_OK(export_peft_adapter(to_peft));
    auto direct = merge(dir / "mg", tiny(model), dir / "from-mg");
    ASSERT_OK(direct);
    EXPECT_EQ(direct->adapter_kind, "megatron");
    auto via_peft = merge(dir / "peft", tiny(model), dir / "from-peft");
    ASSERT_OK(via_peft);
    EXPECT_GT(direct->merged, 0u) << model;
    EXPECT_EQ(direct->merged, via_peft->merged) << model;
    auto a = SafetensorsSet::open_dir(dir / "from-mg");
    auto b = SafetensorsSet::open_dir(dir / "from-peft");
    auto base = SafetensorsSet::open_dir(tiny(model));
    ASSERT_OK(a);
    ASSERT_OK(b);
    ASSERT_OK(base);
    size_t changed = 0;
    for (const auto& [name, entry] : b->tensors()) {
      EXPECT_EQ(bytes_of(*a, name), bytes_of(*b, name)) << model << ": " << name;
      changed += bytes_of(*b, name) != bytes_of(*base, name);
    }
    EXPECT_EQ(changed, via_peft->merged) << model;  // every delta moved its tensor
  }
}

}  // namespace
}  // namespace g4::lora
