// MoE routing, on the host for every backend: the router logits come back to the host, and the top-k, its
// tie-break and the renormalisation run here, so both backends route identically by construction.
#pragma once

#include <cstdint>
#include <vector>

#include "forward/mat.h"
#include "forward/ops.h"

namespace g4::forward {

// Softmax over all experts in fp32, top-k (largest first, the lower index first among equals, as torch.topk),
// renormalise to sum 1, then × per_expert_scale.
Routing route(const Mat& logits, int64_t top_k, const std::vector<float>& per_expert_scale);

// Tokens (and their top-k slots) routed to expert `e`, in token order.
void tokens_of_expert(const Routing& route, int64_t e, std::vector<int64_t>& tokens, std::vector<int64_t>& slots);

}  // namespace g4::forward
