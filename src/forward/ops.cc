// The part of the op API written once for every backend: the grouped expert op in terms of the other ops.
#include "forward/ops.h"

#include <numeric>

#include "forward/routing.h"

namespace g4::forward {

Result<Tensor> Backend::experts(const Tensor& x, const Routing& route, ExpertWeights& weights, int64_t hidden, const Precision& p) {
  Tensor out = zeros(x.rows(), hidden);
  std::vector<int64_t> tokens, slots, gate_cols, up_cols;
  std::vector<float> token_weights;
  int64_t experts = 0;
  for (int32_t e : route.experts) experts = std::max<int64_t>(experts, e + 1);
  for (int64_t e = 0; e < experts; ++e) {
    tokens_of_expert(route, e, tokens, slots);
    if (tokens.empty()) continue;  // unselected experts are never read
    const Tensor xe = gather_rows(x, tokens);
    G4_ASSIGN_OR_RETURN(Tensor gate_up_w, weights.gate_up(e));
    Tensor h = linear(xe, gate_up_w, p);
    G4_RETURN_IF_ERROR(weights.adapt_gate_up(e, xe, h));
    const int64_t half = h.cols() / 2;
    if (static_cast<int64_t>(gate_cols.size()) != half) {
      gate_cols.resize(static_cast<size_t>(half));
      up_cols.resize(static_cast<size_t>(half));
      std::iota(gate_cols.begin(), gate_cols.end(), int64_t{0});
      std::iota(up_cols.begin(), up_cols.end(), half);
    }
    Tensor gate = select_columns(h, gate_cols);
    gelu_tanh_mul(gate, select_columns(h, up_cols), p);
    G4_ASSIGN_OR_RETURN(Tensor down_w, weights.down(e));
    Tensor y = linear(gate, down_w, p);
    G4_RETURN_IF_ERROR(weights.adapt_down(e, gate, y));
    token_weights.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) token_weights[i] = route.weights[static_cast<size_t>(tokens[i] * route.top_k + slots[i])];
    scatter_add_rows(out, y, tokens, token_weights, p);
  }
  return out;
}

}  // namespace g4::forward
