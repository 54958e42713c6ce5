#include "forward/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/status.h"

namespace g4::forward {

Routing route(const Mat& logits, int64_t top_k, const std::vector<float>& per_expert_scale) {
  const int64_t T = logits.rows, E = logits.cols;
  G4_CHECK(top_k >= 1 && top_k <= E && static_cast<int64_t>(per_expert_scale.size()) == E);
  Routing r;
  r.tokens = T;
  r.top_k = top_k;
  r.experts.resize(static_cast<size_t>(T * top_k));
  r.weights.resize(static_cast<size_t>(T * top_k));
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* s = logits.row(t);
    const float max_s = *std::max_element(s, s + E);
    std::vector<float> prob(static_cast<size_t>(E));
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += (prob[static_cast<size_t>(e)] = std::exp(s[e] - max_s));
    for (float& pr : prob) pr /= sum;
    std::vector<int32_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      const float pa = prob[static_cast<size_t>(a)], pb = prob[static_cast<size_t>(b)];
      return pa != pb ? pa > pb : a < b;
    });
    float kept = 0;
    for (int64_t k = 0; k < top_k; ++k) kept += prob[static_cast<size_t>(order[static_cast<size_t>(k)])];
    for (int64_t k = 0; k < top_k; ++k) {
      const int32_t e = order[static_cast<size_t>(k)];
      r.experts[static_cast<size_t>(t * top_k + k)] = e;
      // Renormalise first, then scale: the other order cancels per_expert_scale (pitfalls.md P23).
      r.weights[static_cast<size_t>(t * top_k + k)] = prob[static_cast<size_t>(e)] / kept * per_expert_scale[static_cast<size_t>(e)];
    }
  }
  return r;
}

void tokens_of_expert(const Routing& route, int64_t e, std::vector<int64_t>& tokens, std::vector<int64_t>& slots) {
  tokens.clear();
  slots.clear();
  for (int64_t t = 0; t < route.tokens; ++t)
    for (int64_t k = 0; k < route.top_k; ++k)
      if (route.experts[static_cast<size_t>(t * route.top_k + k)] == e) tokens.push_back(t), slots.push_back(k);
}

}  // namespace g4::forward
