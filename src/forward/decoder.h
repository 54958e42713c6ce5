// The Gemma 4 text decoder, written once in ops.h calls for both semantics: `side` (side.h) gives the parameter
// names, the fused-or-separate projections and the adapter placement; `weights` the checkpoint. One function per
// block of gemma4-hf.md §3. Weights are read per op and turned into the backend's type once (Backend::weight),
// so memory is bounded by one layer's largest tensor plus activations, whatever the model size.
#pragma once

#include "forward/hf_model.h"
#include "forward/side.h"
#include "forward/weight_reader.h"

namespace g4::forward {

Result<ForwardResult> run_decoder(const WeightReader& weights, const Side& side, const ForwardInput& input, const ForwardOptions& options);

}  // namespace g4::forward
