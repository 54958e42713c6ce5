// Exact, naive attention: one block per (batch, query head, query position), scale 1.0, softmax in fp32 over the
// keys the mask allows (decided per (q, k) from the host mask's per-token arrays by scalar::attention_allows).
// The sums run in the CPU backend's order: each score q·k over d in order (one thread per key), the softmax
// denominator over keys in order (one thread), and each output element over keys in order (one thread per d).
// Only the max is a tree, which is exact in any order. A query that may see no key gets zeros.
#include <cmath>

#include "cuda_check.h"
#include "forward/mask_rule.h"
#include "forward/scalar_math.h"
#include "kernels.h"

namespace g4::cuda {
namespace {

constexpr int kAttentionThreads = 128;

__global__ void attention_kernel(const float* q, const float* k, const float* v, float* out, AttentionShape sh,
                                 const uint8_t* key_is_real, const int64_t* vision_group, float* scratch, int64_t first,
                                 bool bf16) {
  __shared__ float max_of[kAttentionThreads];
  __shared__ int count_of[kAttentionThreads];
  __shared__ float denominator;
  const int64_t triple = first + blockIdx.x;
  const int64_t S = sh.seq, i = triple % S, h = triple / S % sh.q_heads, b = triple / (S * sh.q_heads);
  const int64_t kvh = h / (sh.q_heads / sh.kv_heads);
  const int64_t q_stride = sh.q_heads * sh.hd, kv_stride = sh.kv_heads * sh.hd;
  const float* qi = q + (b * S + i) * q_stride + h * sh.hd;
  const uint8_t* real = key_is_real + b * S;
  const int64_t* group = vision_group ? vision_group + b * S : nullptr;
  float* scores = scratch + static_cast<int64_t>(blockIdx.x) * S;
  float* o = out + (b * S + i) * q_stride + h * sh.hd;

  float local_max = -INFINITY;
  int local_count = 0;
  for (int64_t j = threadIdx.x; j < S; j += blockDim.x) {
    if (!forward::scalar::attention_allows(real, group, sh.window, i, j)) continue;
    const float* kj = k + (b * S + j) * kv_stride + kvh * sh.hd;
    float dot = 0;
    for (int64_t d = 0; d < sh.hd; ++d) dot += qi[d] * kj[d];
    scores[j] = dot;
    local_max = fmaxf(local_max, dot);
    ++local_count;
  }
  max_of[threadIdx.x] = local_max;
  count_of[threadIdx.x] = local_count;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      max_of[threadIdx.x] = fmaxf(max_of[threadIdx.x], max_of[threadIdx.x + half]);
      count_of[threadIdx.x] += count_of[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (count_of[0] == 0) {
    for (int64_t d = threadIdx.x; d < sh.hd; d += blockDim.x) o[d] = 0.0f;
    return;
  }
  const float max_score = max_of[0];
  for (int64_t j = threadIdx.x; j < S; j += blockDim.x)
    if (forward::scalar::attention_allows(real, group, sh.window, i, j)) scores[j] = expf(scores[j] - max_score);
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int64_t j = 0; j < S; ++j)
      if (forward::scalar::attention_allows(real, group, sh.window, i, j)) sum += scores[j];
    denominator = sum;
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < sh.hd; d += blockDim.x) {
    float acc = 0;
    for (int64_t j = 0; j < S; ++j) {
      if (!forward::scalar::attention_allows(real, group, sh.window, i, j)) continue;
      const float weight = scores[j] / denominator;
      acc += weight * v[(b * S + j) * kv_stride + kvh * sh.hd + d];
    }
    o[d] = forward::scalar::round_if(bf16, acc);
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* out, const AttentionShape& shape,
               const uint8_t* key_is_real, const int64_t* vision_group, float* scratch, int64_t chunk_queries, bool bf16,
               cudaStream_t s) {
  const int64_t total = shape.batch * shape.q_heads * shape.seq;
  for (int64_t first = 0; first < total; first += chunk_queries) {
    const int64_t count = total - first < chunk_queries ? total - first : chunk_queries;
    attention_kernel<<<static_cast<unsigned>(count), kAttentionThreads, 0, s>>>(q, k, v, out, shape, key_is_real, vision_group,
                                                                                scratch, first, bf16);
    G4_CUDA_LAUNCHED();
  }
}

}  // namespace g4::cuda
