#include "verify/adapter_sides.h"

#include "lora/peft_export.h"
#include "runtime/dcp/checkpoint.h"
#include "runtime/output_policy.h"

namespace g4::verify {
namespace fs = std::filesystem;

Result<std::shared_ptr<const forward::LowRank>> PeftSource::delta(const std::string& tensor) const {
  const lora::PeftDelta* d = adapter_.find(tensor);
  if (!d) return std::shared_ptr<const forward::LowRank>();
  const size_t i = static_cast<size_t>(d - adapter_.deltas().data());
  G4_ASSIGN_OR_RETURN(lora::PeftFactors f, adapter_.factors(i));
  auto out = std::make_shared<forward::LowRank>();
  out->experts = d->experts;
  out->rank = d->rank;
  out->in = d->in;
  out->out = d->out;
  out->scale = d->scale;
  out->a = std::move(f.a);
  out->b = std::move(f.b);
  return std::shared_ptr<const forward::LowRank>(std::move(out));
}

namespace {

// A checkpoint holding base weights beside its adapters (Megatron-Bridge's full save) has the word embedding.
bool holds_base_weights(const dcp::Checkpoint& ckpt) {
  for (const auto& [key, entry] : ckpt.metadata().tensors)
    if (key.ends_with("embedding.word_embeddings.weight")) return true;
  return false;
}

}  // namespace

Result<AdapterSides> open_adapter_sides(const AdapterVerifyOptions& o) {
  AdapterSides sides;
  const bool peft_given = fs::exists(o.adapter / lora::kAdapterConfigFile);
  if (peft_given && o.mcore.empty())
    return Status::invalid_argument(o.adapter.string() + " is a PEFT adapter directory: give --mcore, the Megatron checkpoint holding "
                                    "the same adapters, to compare it with");
  sides.megatron_adapters = peft_given ? o.mcore : o.adapter;
  G4_ASSIGN_OR_RETURN(std::unique_ptr<dcp::Checkpoint> owned, dcp::Checkpoint::open(sides.megatron_adapters));
  std::shared_ptr<const dcp::Checkpoint> ckpt(std::move(owned));
  G4_ASSIGN_OR_RETURN(const lora::LoraSettings settings, lora::read_lora_settings(ckpt->iteration_dir(), o.settings));
  // The Megatron base: --mcore, else the adapters' own checkpoint when it holds base weights, else the run's.
  if (!peft_given && !o.mcore.empty()) {
    sides.megatron_base = o.mcore, sides.base_reason = "--mcore";
  } else if (holds_base_weights(*ckpt)) {
    sides.megatron_base = sides.megatron_adapters, sides.base_reason = "base weights beside the adapters";
  } else if (settings.pretrained_checkpoint) {
    sides.megatron_base = *settings.pretrained_checkpoint;
    sides.base_reason = "checkpoint.pretrained_checkpoint of " + settings.source.string();
  } else {
    return Status::invalid_argument(ckpt->iteration_dir().string() + " holds adapters only and its run_config.yaml names no "
                                    "checkpoint.pretrained_checkpoint: give --mcore, the base Megatron checkpoint");
  }
  auto base = forward::McoreWeights::open(sides.megatron_base, o.config);
  if (!base.ok()) return base.status().with_context("the Megatron base (" + sides.base_reason + ")");
  sides.base = std::make_shared<forward::McoreWeights>(std::move(*base));
  G4_ASSIGN_OR_RETURN(sides.megatron,
                      forward::McoreAdapters::open(*sides.base, ckpt, {settings.alpha, settings.share_expert_adapters}));

  if (peft_given) {
    sides.peft_dir = o.adapter;
  } else {  // the adapter lora-export writes, in fp32 (exact), into a private scratch directory
    OutputPolicy policy;
    G4_ASSIGN_OR_RETURN(OutputDir scratch, policy.scratch("g4convert-verify-adapter"));
    sides.scratch = std::make_shared<OutputDir>(std::move(scratch));
    lora::PeftExportOptions e;
    e.adapter = sides.megatron_adapters;
    e.out = sides.scratch->file("peft");
    e.reference_hf = o.hf;
    if (!o.config.empty()) e.config_file = o.config;
    e.dtype = DType::kF32;
    e.settings = o.settings;
    e.allow_inexact = o.allow_inexact;
    G4_ASSIGN_OR_RETURN(lora::PeftExportSummary summary, lora::export_peft_adapter(e));
    sides.warnings = summary.warnings;
    sides.peft_dir = e.out;
  }
  G4_ASSIGN_OR_RETURN(lora::PeftAdapter peft, lora::PeftAdapter::open(sides.peft_dir));
  sides.peft = std::make_shared<PeftSource>(std::move(peft));
  return sides;
}

}  // namespace g4::verify
