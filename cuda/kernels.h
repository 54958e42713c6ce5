// Host launchers of the CUDA backend's kernels, all on one stream. Plain and readable on purpose: one thread per
// element, one block per row for reductions, sums in a fixed order; the per-element maths are scalar_math.h's G4_HD
// functions, the ones the CPU backend calls. `bf16` is the Precision's mode (round at the op's rounding points).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace g4::cuda {

// --- elementwise.cu
void round_bf16(float* x, int64_t n, cudaStream_t s);
void f32_to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t s);
void bf16_to_f32(const uint16_t* x, float* out, int64_t n, cudaStream_t s);
void gelu_tanh(float* x, int64_t n, bool bf16, cudaStream_t s);
void geglu(float* gate, const float* up, int64_t n, bool bf16, cudaStream_t s);
void add(float* x, const float* y, int64_t n, bool bf16, cudaStream_t s);
void mul(float* x, const float* y, int64_t n, bool bf16, cudaStream_t s);
void scale(float* x, float factor, int64_t n, bool bf16, cudaStream_t s);
void scale_columns(float* x, const float* v, int64_t rows, int64_t cols, bool bf16, cudaStream_t s);
void softcap(float* x, float cap, int64_t n, bool bf16, cudaStream_t s);

// --- rms_norm.cu: each of `groups` runs of `dim` values normed in place; w null for the weightless norms.
void rms_norm(float* x, const float* w, int64_t groups, int64_t dim, float eps, bool bf16, cudaStream_t s);

// --- rope.cu: x[T, heads·hd] in place with tables cos/sin[T, hd].
void rope(float* x, int64_t tokens, int64_t heads, int64_t hd, const float* cos, const float* sin, bool bf16, cudaStream_t s);

// --- attention.cu
struct AttentionShape {
  int64_t batch, seq, q_heads, kv_heads, hd;
  int64_t window;  // <= 0: none
};
// key_is_real [B·S]; vision_group [B·S] or null. `scratch` holds chunk_queries × S floats (the scores of the
// queries in flight); queries are processed in chunks of that many (batch, head, position) triples.
void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& shape,
               const uint8_t* key_is_real, const int64_t* vision_group, float* scratch, int64_t chunk_queries, bool bf16,
               cudaStream_t s);

// --- rows_columns.cu
void select_columns(const float* x, int64_t rows, int64_t cols, const int64_t* index, int64_t n, float* out, cudaStream_t s);
void write_columns(float* x, int64_t rows, int64_t cols, int64_t first, const float* part, int64_t part_cols, cudaStream_t s);
void gather_rows(const float* x, int64_t cols, const int64_t* rows, int64_t n, float* out, cudaStream_t s);
// For i in order: out[rows[i]] = expert_add(out[rows[i]], y[i], weights[i]). `distinct`: no row repeats (the host
// checked), so every element is added once and may run in parallel; otherwise one thread per column walks i in order.
void scatter_add_rows(float* out, int64_t cols, const float* y, const int64_t* rows, const float* weights, int64_t n,
                      bool distinct, bool bf16, cudaStream_t s);

}  // namespace g4::cuda
