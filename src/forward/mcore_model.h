// The Gemma 4 text decoder with Megatron-Bridge's module structure over a Megatron-Core checkpoint: one fused
// linear_qkv matmul whose output is split per query group, one fused fc1 matmul chunked into gate and up,
// experts indexed in the [L, E, ...] stacks, per-type attention stacks, Megatron's norm names, and on K=V layers
// the V slot ignored (V is the raw K projection, as Gemma4SelfAttention's tied path does). The numerics are
// HF's (the same decoder, decoder.h, over Megatron's names: side.h), so against the original HF checkpoint it
// differs only where the conversion did.
#pragma once

#include "forward/hf_model.h"
#include "forward/mcore_weights.h"

namespace g4::forward {

Result<ForwardResult> mcore_forward(const McoreWeights& weights, const ForwardInput& input, const ForwardOptions& options);

}  // namespace g4::forward
