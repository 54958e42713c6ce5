#include "lora/lora_delta.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/status.h"

namespace g4::lora {

namespace {

// Wider vectors where the CPU has them: every lane does the same IEEE multiply and add (AVX2 without FMA),
// so the result is bit-identical to the scalar order whatever the machine.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define G4_DELTA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define G4_DELTA_CLONES
#endif

constexpr uint64_t kRows = 4, kLanes = 16;  // 4 rows share each load of A; 4 x 16 accumulators stay in registers

// acc[t·len + j] = sum_k b[t·r + k] · a[k·in + j0 + j] for t < rows (<= kRows), j < len, k ascending.
G4_DELTA_CLONES void accumulate(const float* a, const float* b, int64_t r, uint64_t in, uint64_t j0, uint64_t len,
                                uint64_t rows, float* acc) {
  uint64_t j = 0;
  if (rows == kRows) {
    for (; j + kLanes <= len; j += kLanes) {
      float t0[kLanes] = {}, t1[kLanes] = {}, t2[kLanes] = {}, t3[kLanes] = {};
      for (int64_t k = 0; k < r; ++k) {
        const float* ak = a + static_cast<uint64_t>(k) * in + j0 + j;
        const float b0 = b[k], b1 = b[r + k], b2 = b[2 * r + k], b3 = b[3 * r + k];
        for (uint64_t l = 0; l < kLanes; ++l) {
          const float x = ak[l];
          t0[l] += b0 * x;
          t1[l] += b1 * x;
          t2[l] += b2 * x;
          t3[l] += b3 * x;
        }
      }
      std::copy(t0, t0 + kLanes, acc + j);
      std::copy(t1, t1 + kLanes, acc + len + j);
      std::copy(t2, t2 + kLanes, acc + 2 * len + j);
      std::copy(t3, t3 + kLanes, acc + 3 * len + j);
    }
  }
  // The rest (a partial row, fewer rows, the last columns): the same sums, one element at a time.
  for (uint64_t t = 0; t < rows; ++t)
    for (uint64_t jj = j; jj < len; ++jj) {
      float sum = 0;
      for (int64_t k = 0; k < r; ++k) sum += b[t * r + k] * a[static_cast<uint64_t>(k) * in + j0 + jj];
      acc[t * len + jj] = sum;
    }
}

// NaN and Inf among little-endian floats of width sizeof(U): the exponent field `mask` all ones.
template <class U>
uint64_t count_all_ones_exponent(std::span<const std::byte> bytes, U mask) {
  uint64_t n = 0;
  for (size_t i = 0; i + sizeof(U) <= bytes.size(); i += sizeof(U)) {
    U v;
    std::memcpy(&v, bytes.data() + i, sizeof(U));
    n += (v & mask) == mask;
  }
  return n;
}

}  // namespace

bool mergeable_dtype(DType dtype) { return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32; }

uint64_t merge_elements(DType dtype, std::span<const std::byte> src, std::span<std::byte> dst, uint64_t first,
                        const DeltaFactors& f) {
  G4_CHECK(mergeable_dtype(dtype) && src.size() == dst.size());
  const size_t es = dtype_size(dtype);
  const uint64_t n = src.size() / es;
  const uint64_t in = static_cast<uint64_t>(f.in), out = static_cast<uint64_t>(f.out), per_expert = out * in;
  const int64_t r = f.rank;
  G4_CHECK(first + n <= per_expert * static_cast<uint64_t>(f.experts));
  std::vector<float> w, acc;
  // A run of elements of one expert: a partial row, or up to kRows whole rows at once.
  for (uint64_t done = 0; done < n;) {
    const uint64_t idx = first + done;
    const uint64_t e = idx / per_expert, o = idx % per_expert / in, j0 = idx % in;
    uint64_t rows = 1, len = std::min<uint64_t>(in - j0, n - done);
    if (j0 == 0) {
      rows = std::min<uint64_t>({kRows, (n - done) / in, out - o});
      if (rows == 0) rows = 1;  // a partial first row
      else len = in;
    }
    const float* a = f.a + e * static_cast<uint64_t>(r) * in;            // A_e [r, in]
    const float* b = f.b + (e * out + o) * static_cast<uint64_t>(r);     // B_e[o, :]
    acc.resize(rows * len);
    accumulate(a, b, r, in, j0, len, rows, acc.data());
    const uint64_t count = rows * len;  // rows > 1 only for whole rows: contiguous
    w.resize(count);
    to_f32(dtype, src.data() + done * es, w.data(), count);
    for (uint64_t j = 0; j < count; ++j) w[j] = w[j] + f.scale * acc[j];
    from_f32(dtype, w.data(), dst.data() + done * es, count);
    done += count;
  }
  // Counted after rounding (a finite fp32 sum may overflow fp16), on the written bits: exponent all ones.
  return dtype == DType::kF32 ? count_all_ones_exponent<uint32_t>(dst, 0x7F800000u)
                              : count_all_ones_exponent<uint16_t>(dst, dtype == DType::kBF16 ? 0x7F80u : 0x7C00u);
}

}  // namespace g4::lora
