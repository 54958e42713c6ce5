// Which Megatron-Bridge LoRA adapters a torch_dist checkpoint holds and what each becomes in PEFT, derived
// from the conversion plan's rows (lora-peft.md A.1, A.3): an adapter wraps a linear weight the plan maps
// (mappings::is_linear), its keys are the weight's with ".weight" -> ".adapter.linear_{in,out}.weight" in the
// same storage slot, and B's rows are the weight's rows, so the weight's pieces say which B rows each HF target
// gets (fused QKV per query group, fc1 [gate; up], identity). Routed experts become PEFT target_parameters.
// Knows nothing of files written: peft_export.h writes what this derives.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "convert/conversion_plan.h"
#include "lora/lora_settings.h"
#include "runtime/dcp/checkpoint.h"

namespace g4::lora {

// How a routed-expert adapter is stored (A.1).
enum class ExpertStorage : uint8_t {
  kNone,         // not an expert adapter
  kExpertAxis,   // [.., E, r, in] / [.., E, out, r]: MB's shared mode (E identical copies) or per-expert mode
  kLegacyShared, // [.., r, in] / [.., out, r]: older shared-mode checkpoints, no E axis
};

// One stored MB adapter: the A (linear_in) and B (linear_out) of one wrapped linear at one layer.
struct MegatronAdapter {
  int param = -1;          // index into the plan's params: the wrapped base weight
  std::string module;      // the wrapped module's name, e.g. "language_model.decoder.layers.3.self_attention.linear_qkv"
  convert::StorageSlot a, b;  // where linear_in / linear_out are stored (the base weight's stacking)
  Shape a_shape, b_shape;  // one slab: [r, in] / [out, r]; experts kExpertAxis: [E, r, in] / [E, out, r]
  int64_t rank = 0;
  ExpertStorage experts = ExpertStorage::kNone;
  int64_t num_experts = 0;  // E, for expert adapters (also kLegacyShared: the config's)
  DType a_dtype = DType::kF32, b_dtype = DType::kF32;  // as stored
};

// A run of B rows: Megatron rows [mg_row, mg_row + rows) are HF rows [hf_row, hf_row + rows).
struct RowRun {
  int64_t mg_row = 0, hf_row = 0, rows = 0;
};

// One PEFT target: a 2-D module (lora.Linear) or a 3-D expert parameter (lora.ParamWrapper).
struct PeftTarget {
  int adapter = -1;       // index into AdapterLayout::adapters
  std::string module;     // HF module path, e.g. "model.language_model.layers.3.self_attn.q_proj" or "...layers.3.experts"
  std::string parameter;  // experts: "gate_up_proj" / "down_proj"; empty for a module target
  std::string key_prefix; // "base_model.model.<module>" plus ".base_layer" per inner ParamWrapper level
  int64_t out_rows = 0;   // rows of the HF weight (experts: d1 of [E, d1, d2])
  std::vector<RowRun> b_rows;  // the adapter's B rows this target takes, in HF row order (experts: all rows)
  int layer = -1;
  std::string path() const { return parameter.empty() ? module : module + "." + parameter; }
};

// B rows of an adapter that no HF module holds (the V slot of attention_k_eq_v layers, the K/V of KV-shared
// layers): Megatron never trains them, so they must still be zero.
struct UntrainedRows {
  int adapter = -1;
  std::vector<RowRun> b_rows;  // hf_row unused
  std::string why;             // "the V slot of an attention_k_eq_v layer", ...
};

struct AdapterLayout {
  const convert::ConversionPlan* plan = nullptr;
  std::string text_prefix;  // HF: "model.language_model." (conditional form) or "model." (causal)
  std::vector<MegatronAdapter> adapters;
  std::vector<PeftTarget> targets;  // plan order: layer by layer, q/k/v, o, gate/up, down, ...
  std::vector<UntrainedRows> untrained;
  int64_t rank = 0;                              // the adapter_config.json r: settings.dim
  std::map<std::string, int64_t> rank_pattern;   // HF target path -> rank, where it differs from `rank`
  // Adapters whose MB forward no PEFT LoRA reproduces, empty when none: 26B-A4B linear_proj (MB adds it after the
  // post-attention norm of TERowParallelLinearLayerNorm, lora-peft.md A.2) and the router (MB's LoRATopKRouter
  // feeds the adapter the router's raw input; HF's router.proj sees it normalised and scaled).
  struct Inexact {
    std::string module;
    std::string why;
  };
  std::vector<Inexact> inexact;
  bool has_expert_targets() const;
};

// Derives the layout from the checkpoint's "*.adapter.*" tensors against `plan` (built for the checkpoint's
// language prefix, no towers needed). Errors, naming the checkpoint and key: an adapter key no rule explains,
// DoRA or canonical-LoRA keys, SGLang's shared-outer expert layout, a shape disagreeing with the config (stacked
// axes included), A and B ranks that differ, a rank disagreeing with `settings` (normalize_moe_lora's expert rank
// included), expert slices that differ under share_expert_adapters, no adapter at all.
Result<AdapterLayout> derive_adapter_layout(const dcp::Checkpoint& ckpt, const convert::ConversionPlan& plan,
                                            const gemma4::ModelConfig& config, const LoraSettings& settings);

// The PEFT target_modules regex (re.fullmatch) matching exactly the 2-D modules of `layout`, so PEFT wraps no
// other module (no vision/audio Gemma4ClippableLinear, no K/V a layer lacks): "" when there is none.
std::string target_modules_regex(const AdapterLayout& layout);
// The expert parameters of `layout`, as PEFT's target_parameters (HF parameter paths), in target order.
std::vector<std::string> target_parameters(const AdapterLayout& layout);

// Reads one adapter's A and B as f32 (row-major over the slab shapes above; kLegacyShared without an E axis).
struct AdapterValues {
  std::vector<float> a, b;
};
Result<AdapterValues> read_adapter(const dcp::Checkpoint& ckpt, const MegatronAdapter& adapter);

}  // namespace g4::lora
