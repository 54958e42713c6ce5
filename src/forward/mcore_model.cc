// Megatron-Bridge's semantics over a Megatron-Core checkpoint: the shared decoder over Megatron's names, fused
// linear_qkv and fc1, expert stacks, and MB's adapter placement (side.h).
#include "forward/mcore_model.h"

#include "forward/decoder.h"

namespace g4::forward {

Result<ForwardResult> mcore_forward(const McoreWeights& w, const ForwardInput& in, const ForwardOptions& o) {
  return run_decoder(w, megatron_side(w.config().text), in, o);
}

}  // namespace g4::forward
