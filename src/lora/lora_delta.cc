#include "lora/lora_delta.h"

#include <vector>

#include "runtime/finite_scan.h"
#include "runtime/status.h"

namespace g4::lora {

bool mergeable_dtype(DType dtype) { return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32; }

uint64_t merge_elements(DType dtype, std::span<const std::byte> src, std::span<std::byte> dst, uint64_t first,
                        const DeltaFactors& f) {
  G4_CHECK(mergeable_dtype(dtype) && src.size() == dst.size());
  const size_t es = dtype_size(dtype);
  const uint64_t n = src.size() / es;
  const uint64_t in = static_cast<uint64_t>(f.in), per_expert = static_cast<uint64_t>(f.out) * in;
  const int64_t r = f.rank;
  G4_CHECK(first + n <= per_expert * static_cast<uint64_t>(f.experts));
  std::vector<float> w, acc;
  // One row segment at a time: element (e, o, j) for j in [j0, j1).
  for (uint64_t done = 0; done < n;) {
    const uint64_t idx = first + done;
    const uint64_t e = idx / per_expert, o = idx % per_expert / in, j0 = idx % in;
    const uint64_t len = std::min<uint64_t>(in - j0, n - done);
    const float* a = f.a + e * static_cast<uint64_t>(r) * in;                  // A_e [r, in]
    const float* b = f.b + (e * static_cast<uint64_t>(f.out) + o) * r;        // B_e[o, :]
    acc.assign(len, 0.0f);
    for (int64_t k = 0; k < r; ++k) {
      const float bk = b[k];
      const float* ak = a + static_cast<uint64_t>(k) * in + j0;
      for (uint64_t j = 0; j < len; ++j) acc[j] += bk * ak[j];
    }
    w.resize(len);
    to_f32(dtype, src.data() + done * es, w.data(), len);
    for (uint64_t j = 0; j < len; ++j) w[j] = w[j] + f.scale * acc[j];
    from_f32(dtype, w.data(), dst.data() + done * es, len);
    done += len;
  }
  // Counted after rounding: a finite fp32 sum may overflow fp16.
  const NonFiniteCount bad = count_non_finite(dtype, dst);
  return bad.nan + bad.inf;
}

}  // namespace g4::lora
