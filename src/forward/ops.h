// The op vocabulary of the reference forward. The HF-semantics model (hf_model.cc) is written only in
// these ops, so a CUDA backend mirrors it op for op by implementing this interface; the Megatron-semantics
// forward reuses the same kernels. Every op computes in fp32 and rounds its result per `Precision`
// (precision.h lists where). Shapes are PyTorch order; T = tokens (batch × sequence).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "forward/mat.h"
#include "forward/precision.h"

namespace g4::forward {

// Which keys each query may see (masks.h builds it): key k of row b is real, and k <= q or (bidirectional vision
// groups) q and k lie in the same group, and, with a window W, k > q - W. Held per token and decided per (q, k)
// on the fly: a [B, S, S] table would need B·S² bytes, 90 GB at 300k tokens.
struct AttentionMask {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<uint8_t> key_is_real;   // [B, S]
  std::vector<int64_t> vision_group;  // [B, S] group id or -1; empty when no bidirectional groups apply
  std::optional<int64_t> window;      // sliding layers: the query sees itself and W-1 earlier tokens

  bool at(int64_t b, int64_t q, int64_t k) const {
    const size_t row = static_cast<size_t>(b * seq);
    if (!key_is_real[row + static_cast<size_t>(k)]) return false;
    if (window && k <= q - *window) return false;
    if (k <= q) return true;
    if (vision_group.empty()) return false;
    const int64_t g = vision_group[row + static_cast<size_t>(q)];
    return g >= 0 && g == vision_group[row + static_cast<size_t>(k)];
  }
};

// Top-k routing of one MoE layer: per token, K expert indices (descending probability) and their weights.
struct Routing {
  int64_t tokens = 0;
  int64_t top_k = 0;
  std::vector<int32_t> experts;  // [T, K]
  std::vector<float> weights;    // [T, K], renormalised then × per_expert_scale
};

class Backend {
 public:
  virtual ~Backend() = default;

  // out[T, N] = x[T, K] · w[N, K]ᵀ (nn.Linear without bias).
  virtual void linear(const Mat& x, const Mat& w, Mat& out, const Precision& p) = 0;
  // RMSNorm over each run of `dim` values of x: x · (mean(x²) + eps)^-0.5 · w, where w (length dim) may be
  // null for the weightless norms (v_norm, router norm). Plain w, not 1 + w (Gemma4RMSNorm).
  virtual void rms_norm(Mat& x, const float* w, int64_t dim, float eps, const Precision& p) = 0;
  // Rotary embedding on each head (size hd) of x[T, heads·hd] with per-token tables cos/sin[T, hd]:
  // x·cos + rotate_half(x)·sin, rotate_half pairing (j, j + hd/2) over the full head.
  virtual void rope(Mat& x, int64_t hd, const Mat& cos, const Mat& sin, const Precision& p) = 0;
  // Scaled-dot-product attention with scale 1.0: q[T, Hq·hd], k/v[T, Hkv·hd] (T = B·S), GQA (query head h
  // reads KV head h / (Hq/Hkv)), softmax in fp32 over allowed keys; out[T, Hq·hd]. A query that may see no
  // key gets zeros.
  virtual void attention(const Mat& q, const Mat& k, const Mat& v, int64_t q_heads, int64_t kv_heads, int64_t hd,
                         const AttentionMask& mask, Mat& out, const Precision& p) = 0;
  // gate = gelu_tanh(gate) · up (GeGLU), rounding after the activation and after the product.
  virtual void gelu_tanh_mul(Mat& gate, const Mat& up, const Precision& p) = 0;
  // In place: x = gelu_tanh(x).
  virtual void gelu_tanh(Mat& x, const Precision& p) = 0;
  virtual void add(Mat& x, const Mat& y, const Precision& p) = 0;       // x += y
  virtual void mul(Mat& x, const Mat& y, const Precision& p) = 0;       // x *= y (elementwise)
  virtual void scale(Mat& x, float s, const Precision& p) = 0;          // x *= s
  // x[t, :] *= v (a row vector of length cols), e.g. router.scale.
  virtual void scale_columns(Mat& x, const std::vector<float>& v, const Precision& p) = 0;
  // cap · tanh(x / cap), rounding after each of the three steps as transformers does in bf16.
  virtual void softcap(Mat& x, float cap, const Precision& p) = 0;
  // Router: softmax over all experts in fp32, top-k, renormalise to sum 1, then × per_expert_scale.
  virtual Routing route(const Mat& logits, int64_t top_k, const std::vector<float>& per_expert_scale) = 0;
};

// OpenMP loops, OpenBLAS for linear() when `use_blas`.
std::unique_ptr<Backend> make_cpu_backend(bool use_blas = true);

}  // namespace g4::forward
