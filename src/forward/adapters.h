// LoRA deltas the forwards apply on top of their base weights (verify --adapter): each side gets them from its
// own reader (McoreAdapters from the Megatron checkpoint's adapter keys; a PEFT adapter on the HF side) and
// applies them the way its framework does, so an adapter export that moved a row or an expert shows up as a
// divergence. Without an AdapterSource the forwards are unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "forward/mat.h"
#include "forward/ops.h"
#include "forward/precision.h"
#include "runtime/status.h"

namespace g4::forward {

// One LoRA delta s·B·A on a base weight [out, in] (experts: on each expert's [out, in]), factors as f32.
struct LowRank {
  int64_t experts = 0;  // 0: one pair for the weight, or shared by all its experts; E: one pair per expert
  int64_t rank = 0, in = 0, out = 0;
  double scale = 0;     // alpha / rank
  std::vector<float> a;  // [max(E,1), rank, in]
  std::vector<float> b;  // [max(E,1), out, rank]

  Mat a_of(int64_t e) const;  // [rank, in] of expert e (the one pair when experts is 0)
  Mat b_of(int64_t e) const;  // [out, rank]
};

// The deltas one forward applies, looked up by the base weight's name in that forward's own naming
// (hf_model: the full HF tensor name; mcore_model: the Megatron parameter name without the language prefix).
class AdapterSource {
 public:
  virtual ~AdapterSource() = default;
  // Null when `weight` has no delta.
  virtual Result<std::shared_ptr<const LowRank>> delta(const std::string& weight) const = 0;
};

// out += s·B_e·(A_e·x), unmerged. `inner` rounds the adapter's own matmuls and its scaling (Megatron-Bridge runs
// its adapter in the model dtype; PEFT upcasts the adapter and its input to fp32); the add is rounded per `p`.
Status add_unmerged(Backend& ops, const LowRank& d, int64_t e, const Tensor& x, Tensor& out, const Precision& inner,
                    const Precision& p);
// w (expert e's [out, in], on the host) + s·B_e·A_e with the factors first rounded per `p`, B·A accumulated in
// fp32, the sum rounded once: PEFT's ParamWrapper for 3-D expert parameters (baddbmm in the parameter's dtype).
Status merge_into(const LowRank& d, int64_t e, Mat& w, const Precision& p);

}  // namespace g4::forward
