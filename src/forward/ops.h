// The op API of the reference forward, one interface for every backend (CPU: cpu_backend.cc; CUDA:
// cuda/cuda_backend.cu). The decoder (decoder.cc) is written only in these ops, for both semantics (HF and
// Megatron), so a backend that implements them runs every model, golden and verify unchanged.
//
// Tensors (tensor.h) live on the backend's device: activations f32, weights in the type the op multiplies in.
// Every op computes in fp32 and rounds its result per `Precision` (precision.h lists where). Shapes are PyTorch
// order; T = tokens (batch × sequence). Routing (top-k, tie-break, renormalisation) is host code by design
// (routing.h), so it is identical on every backend; so are masks and RoPE tables, built on the host and uploaded.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "forward/mat.h"
#include "forward/precision.h"
#include "forward/tensor.h"
#include "runtime/status.h"

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

// The routed experts of one MoE layer as the grouped expert op reads them: expert e's gate_up [2I, H] (rows
// [0, I) gate) and down [H, I] weights, ready for Backend::linear, and the LoRA a side adds to an expert's
// outputs on its routed tokens (Megatron-Bridge's per-expert adapters; nothing by default).
class ExpertWeights {
 public:
  virtual ~ExpertWeights() = default;
  virtual Result<Tensor> gate_up(int64_t e) = 0;
  virtual Result<Tensor> down(int64_t e) = 0;
  virtual Status adapt_gate_up(int64_t /*e*/, const Tensor& /*x*/, Tensor& /*h*/) { return {}; }
  virtual Status adapt_down(int64_t /*e*/, const Tensor& /*x*/, Tensor& /*y*/) { return {}; }
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // One line for reports: "cpu: 2 threads, OpenBLAS sgemm, oneDNN bf16 matmul", "cuda: NVIDIA H200 (sm_90) ...".
  virtual std::string describe() const = 0;
  // Waits until every op queued so far has finished (the CUDA stream; nothing on the CPU): for timing ops.
  virtual void synchronize() {}

  // --- Memory. Activations are f32 tensors on this backend's device.
  virtual Tensor empty(int64_t rows, int64_t cols) = 0;  // contents unspecified
  virtual Tensor zeros(int64_t rows, int64_t cols) = 0;
  virtual Tensor upload(const Mat& host) = 0;
  virtual Mat download(const Tensor& x) = 0;
  // A weight read from a checkpoint (a host tensor in its stored type, 2-D) as linear() takes it: bf16 in bf16 mode
  // (f32 storage rounded once, as from_pretrained(dtype=bfloat16) does); in fp32 mode f32, or bf16 storage as it
  // is where the backend's GEMM widens it (its values are exact in f32). Called once per weight per forward: the
  // CPU backend keeps bf16 storage and storage already in the wanted type as it is (no copy); the CUDA backend
  // uploads through pinned staging (and widens on the device in fp32 mode).
  virtual Tensor weight(const Tensor& host, const Precision& p) = 0;
  // A small parameter (norm weight, router scale) as an f32 tensor whose values are rounded per `p`.
  virtual Tensor parameter(const std::vector<float>& values, const Precision& p) = 0;

  // --- Data movement.
  virtual Tensor copy(const Tensor& x) = 0;
  // out[:, j] = x[:, index[j]]: the gate/up chunks, PLE slices and Megatron's per-group QKV split.
  virtual Tensor select_columns(const Tensor& x, std::span<const int64_t> index) = 0;
  // x[:, first + j] = part[:, j] (the tied head's vocabulary blocks).
  virtual void write_columns(Tensor& x, int64_t first, const Tensor& part) = 0;
  // out[i, :] = x[rows[i], :].
  virtual Tensor gather_rows(const Tensor& x, std::span<const int64_t> rows) = 0;
  // For i in order: out[rows[i]] = round(out[rows[i]] + round(y[i] · weights[i])), bf16 index_add_ semantics. The
  // fixed order makes the bf16 sum, and so the result, deterministic (no atomics).
  virtual void scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> weights,
                                const Precision& p) = 0;

  // --- Compute.
  // out[T, N] = x[T, K] · w[N, K]ᵀ (nn.Linear without bias), accumulated in fp32. w comes from weight(). In bf16 mode
  // a bf16 w multiplies x as bf16 (exact: x holds bf16 values wherever the model hands a bf16 GEMM its input); in
  // fp32 mode a bf16 w multiplies as its exact f32 values.
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Precision& p) = 0;
  // RMSNorm over each run of `dim` values of x: x · (mean(x²) + eps)^-0.5 · w; w (f32, length dim) null for the
  // weightless norms (v_norm, router norm). Plain w, not 1 + w (Gemma4RMSNorm).
  virtual void rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) = 0;
  // Rotary embedding on each head (size hd) of x[T, heads·hd] with per-token tables cos/sin[T, hd] (built on the
  // host, rope.h): x·cos + rotate_half(x)·sin.
  virtual void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) = 0;
  // Scaled-dot-product attention with scale 1.0: q[T, Hq·hd], k/v[T, Hkv·hd] (T = B·S), GQA (query head h reads
  // KV head h / (Hq/Hkv)), softmax in fp32 over allowed keys; out[T, Hq·hd]. A query that may see no key gets zeros.
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t q_heads, int64_t kv_heads, int64_t hd,
                           const AttentionMask& mask, const Precision& p) = 0;
  // gate = gelu_tanh(gate) · up (GeGLU), rounding after the activation and after the product.
  virtual void gelu_tanh_mul(Tensor& gate, const Tensor& up, const Precision& p) = 0;
  virtual void gelu_tanh(Tensor& x, const Precision& p) = 0;         // in place
  virtual void add(Tensor& x, const Tensor& y, const Precision& p) = 0;  // x += y
  virtual void mul(Tensor& x, const Tensor& y, const Precision& p) = 0;  // x *= y (elementwise)
  virtual void scale(Tensor& x, float s, const Precision& p) = 0;       // x *= s
  // x[t, :] *= v (v: f32 [1, cols]), e.g. router.scale.
  virtual void scale_columns(Tensor& x, const Tensor& v, const Precision& p) = 0;
  // cap · tanh(x / cap), rounding after each of the three steps as transformers does in bf16.
  virtual void softcap(Tensor& x, float cap, const Precision& p) = 0;

  // --- The grouped expert op: for each expert in ascending order that has tokens, gather its token rows of x,
  // gate_up, GeGLU, down, then scatter-add weight · y into the [T, H] result in that order (scalar::expert_add).
  // Unselected experts are never read. Written once here in the ops above; a backend may override it.
  virtual Result<Tensor> experts(const Tensor& x, const Routing& route, ExpertWeights& weights, int64_t hidden,
                                 const Precision& p);
};

// The CPU backend: OpenMP over rows, heads and tokens; OpenBLAS sgemm for f32 GEMMs and oneDNN's bf16 matmul
// (bf16 inputs, fp32 accumulation, the library PyTorch's CPU bf16 linear calls) for bf16 ones, unless
// `use_blas` is false (plain loops, bench/forward.sh's comparison).
std::unique_ptr<Backend> make_cpu_backend(bool use_blas = true);

// The backend for `device` ("cpu" or "cuda"): a one-line error when this build has no CUDA or the machine no GPU.
Result<std::unique_ptr<Backend>> make_backend(std::string_view device);

}  // namespace g4::forward
