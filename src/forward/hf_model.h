// The Gemma 4 text decoder with HF transformers' semantics (modeling_gemma4.py, transformers 5.23): the shared
// decoder (decoder.h) over HF's names (side.h). Also the options and results both forwards share.
#pragma once

#include <functional>
#include <vector>

#include "forward/adapters.h"
#include "forward/forward_input.h"
#include "forward/hf_weights.h"
#include "forward/ops.h"

namespace g4::forward {

// What each sub-block of a layer contributed, for verify's diagnosis (filled only when asked for).
struct LayerTrace {
  Mat attention;      // attention output after its post-norm (what is added to the residual)
  Mat mlp;            // dense MLP, or the MoE model's shared expert, after its post-norm
  Mat router_logits;  // [T, E] (MoE layers)
  Mat experts;        // routed experts' output after their post-norm (MoE layers)
  Mat ple;            // per-layer-embedding contribution (PLE layers)
};

struct ForwardOptions {
  ComputeMode mode = ComputeMode::kF32;
  Backend* backend = nullptr;        // required
  bool all_logits = false;           // logits at every position, not just each row's last real token
  bool keep_hidden = false;          // residual stream after the embedding and after every layer
  std::vector<LayerTrace>* trace = nullptr;  // per-layer sub-block outputs, when set
  std::function<void(int layers_done, int layers_total)> on_layer;  // progress
  // Bytes of activations the run may hold (check_fits in model_common.h); 0: the machine's physical memory.
  uint64_t memory_limit = 0;
  // LoRA deltas on top of the base weights, in this forward's naming (adapters.h); null: none.
  const AdapterSource* adapters = nullptr;
};

struct LayerRouting {
  int layer = 0;
  Routing routing;  // T = B·S tokens, row-major
};

struct ForwardResult {
  int64_t batch = 0, seq = 0;
  // [B·S, V] when all_logits, else [B, V] at last_real[b]. F32, after the final softcap.
  Mat logits;
  std::vector<int64_t> last_real;
  // hidden[0]: scaled embedding output; hidden[l+1]: residual stream after layer l (after layer_scalar). [B·S, H].
  std::vector<Mat> hidden;
  std::vector<LayerRouting> routing;  // one entry per MoE layer
};

Result<ForwardResult> hf_forward(const HfWeights& weights, const ForwardInput& input, const ForwardOptions& options);

}  // namespace g4::forward
