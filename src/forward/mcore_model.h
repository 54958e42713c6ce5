// The Gemma 4 text decoder with Megatron-Bridge's module structure over a Megatron-Core checkpoint: one fused
// linear_qkv matmul whose output is split per query group, one fused fc1 matmul chunked into gate and up,
// experts indexed in the [L, E, ...] stacks, per-type attention stacks, Megatron's norm names, and on K=V layers
// the V slot ignored (V is the raw K projection, as Gemma4SelfAttention's tied path does). The numerics are
// HF's (the same op kernels and precision policy as hf_model.cc), so against the original HF checkpoint it
// differs only where the conversion did.
#pragma once

#include "forward/hf_model.h"
#include "forward/mcore_weights.h"

namespace g4::forward {

// Deliberate faults in the forward itself, so that tests can check that verify catches and locates them.
// Never set outside tests.
struct FaultInjection {
  bool rope_first_dims = false;   // full layers rotate the first 2·n_rot dims contiguously, not pairs (j, j+hd/2)
  int softcap_times = 1;          // 0: skipped, 2: applied twice
  int64_t sliding_window_delta = 0;
};

Result<ForwardResult> mcore_forward(const McoreWeights& weights, const ForwardInput& input, const ForwardOptions& options,
                                    const FaultInjection& faults = {});

}  // namespace g4::forward
