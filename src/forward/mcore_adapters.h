// Megatron-Bridge LoRA adapters read straight from a torch_dist checkpoint's "<module>.adapter.linear_in.weight"
// (A, [r, in]) and ".adapter.linear_out.weight" (B, [out, r]) keys, for the Megatron-semantics forward
// (lora-peft.md A.1). Where each is stored is resolved from the checkpoint's own keys by the rules the base
// weights are read with (McoreWeights::locate), independently of the LoRA export's layout code, so a layout
// bug there shows up as a divergence. Rank from the stored shape; scale alpha / rank (MB's alpha / dim).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "forward/adapters.h"
#include "forward/mcore_weights.h"
#include "runtime/dcp/checkpoint.h"

namespace g4::forward {

struct McoreAdapterOptions {
  double alpha = 32;
  // MB's share_expert_adapters: an expert adapter stored with an E axis is one adapter written to every slot,
  // which MB averages on load; per-expert mode (false) reads each expert's own slot.
  bool share_expert_adapters = true;
};

class McoreAdapters final : public AdapterSource {
 public:
  // The adapters `ckpt` holds (an adapter-only checkpoint, or the base one) for the model `base` reads, which
  // gives the config, the language prefix and the wrapped weights' shapes. Errors name the checkpoint and key:
  // an adapter on a module the forward does not wrap, A without B, shapes that disagree with the wrapped
  // weight (stacked axes included) or with each other.
  static Result<std::shared_ptr<McoreAdapters>> open(const McoreWeights& base, std::shared_ptr<const dcp::Checkpoint> ckpt,
                                                     const McoreAdapterOptions& options);

  // `weight`: the wrapped base weight in the forward's naming ("decoder.layers.3.self_attention.linear_qkv.weight").
  Result<std::shared_ptr<const LowRank>> delta(const std::string& weight) const override;
  // The adapted weights, forward naming, in layer order.
  std::vector<std::string> weights() const;

 private:
  struct Stored {
    McoreWeights::Location a, b;
    Shape a_shape, b_shape;  // one slab (no stacked axis)
    int64_t rank = 0, in = 0, out = 0;
    int64_t experts = 0;     // E when the adapter has an E axis
    bool expert_weight = false;
  };
  Result<std::vector<float>> read(const McoreWeights::Location& at, const Shape& shape) const;

  std::shared_ptr<const dcp::Checkpoint> ckpt_;
  McoreAdapterOptions options_;
  std::map<std::string, Stored> stored_;
  std::vector<std::string> order_;
};

}  // namespace g4::forward
