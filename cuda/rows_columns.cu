// Data movement by index: one thread per element, except the ordered scatter-add when rows repeat (one thread per
// column walking the rows in order, so the bf16 sum has the CPU backend's order; no atomics anywhere).
#include "cuda_check.h"
#include "forward/scalar_math.h"
#include "kernels.h"
#include "launch.h"

namespace g4::cuda {
namespace {

__global__ void select_columns_kernel(const float* x, int64_t rows, int64_t cols, const int64_t* index, int64_t n, float* out) {
  const int64_t e = G4_ELEMENT_INDEX();
  if (e >= rows * n) return;
  const int64_t r = e / n, j = e % n;
  out[e] = x[r * cols + index[j]];
}

__global__ void write_columns_kernel(float* x, int64_t rows, int64_t cols, int64_t first, const float* part, int64_t part_cols) {
  const int64_t e = G4_ELEMENT_INDEX();
  if (e >= rows * part_cols) return;
  const int64_t r = e / part_cols, j = e % part_cols;
  x[r * cols + first + j] = part[e];
}

__global__ void gather_rows_kernel(const float* x, int64_t cols, const int64_t* rows, int64_t n, float* out) {
  const int64_t e = G4_ELEMENT_INDEX();
  if (e >= n * cols) return;
  const int64_t i = e / cols, c = e % cols;
  out[e] = x[rows[i] * cols + c];
}

__global__ void scatter_add_distinct_kernel(float* out, int64_t cols, const float* y, const int64_t* rows, const float* weights,
                                            int64_t n, bool bf16) {
  const int64_t e = G4_ELEMENT_INDEX();
  if (e >= n * cols) return;
  const int64_t i = e / cols, c = e % cols;
  float& acc = out[rows[i] * cols + c];
  acc = forward::scalar::expert_add(bf16, acc, y[e], weights[i]);
}

__global__ void scatter_add_ordered_kernel(float* out, int64_t cols, const float* y, const int64_t* rows, const float* weights,
                                           int64_t n, bool bf16) {
  const int64_t c = G4_ELEMENT_INDEX();
  if (c >= cols) return;
  for (int64_t i = 0; i < n; ++i) {
    float& acc = out[rows[i] * cols + c];
    acc = forward::scalar::expert_add(bf16, acc, y[i * cols + c], weights[i]);
  }
}

}  // namespace

void select_columns(const float* x, int64_t rows, int64_t cols, const int64_t* index, int64_t n, float* out, cudaStream_t s) {
  if (rows * n <= 0) return;
  select_columns_kernel<<<blocks_for(rows * n), kThreads, 0, s>>>(x, rows, cols, index, n, out);
  G4_CUDA_LAUNCHED();
}

void write_columns(float* x, int64_t rows, int64_t cols, int64_t first, const float* part, int64_t part_cols, cudaStream_t s) {
  if (rows * part_cols <= 0) return;
  write_columns_kernel<<<blocks_for(rows * part_cols), kThreads, 0, s>>>(x, rows, cols, first, part, part_cols);
  G4_CUDA_LAUNCHED();
}

void gather_rows(const float* x, int64_t cols, const int64_t* rows, int64_t n, float* out, cudaStream_t s) {
  if (n * cols <= 0) return;
  gather_rows_kernel<<<blocks_for(n * cols), kThreads, 0, s>>>(x, cols, rows, n, out);
  G4_CUDA_LAUNCHED();
}

void scatter_add_rows(float* out, int64_t cols, const float* y, const int64_t* rows, const float* weights, int64_t n,
                      bool distinct, bool bf16, cudaStream_t s) {
  if (n * cols <= 0) return;
  if (distinct)
    scatter_add_distinct_kernel<<<blocks_for(n * cols), kThreads, 0, s>>>(out, cols, y, rows, weights, n, bf16);
  else
    scatter_add_ordered_kernel<<<blocks_for(cols), kThreads, 0, s>>>(out, cols, y, rows, weights, n, bf16);
  G4_CUDA_LAUNCHED();
}

}  // namespace g4::cuda
