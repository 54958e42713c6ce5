// HF transformers' semantics (modeling_gemma4.py, transformers 5.23): the shared decoder over HF's names.
#include "forward/hf_model.h"

#include "forward/decoder.h"

namespace g4::forward {

Result<ForwardResult> hf_forward(const HfWeights& w, const ForwardInput& in, const ForwardOptions& o) {
  return run_decoder(w, hf_side(w.prefix()), in, o);
}

}  // namespace g4::forward
