// The one arithmetic rule of lora-merge (lora-peft.md A.3 merge-only path, MB's _merge_single_adapter_weight and
// PEFT's unsafe Linear merge): for every element of a targeted weight,
//   acc = sum over k = 0, 1, ..., r-1 of (B[o,k] · A[k,j]), each product and partial sum rounded to fp32, in that
//         order (no fused multiply-add: this file is compiled with -ffp-contract=off);
//   W'  = round_to_dtype( fp32(W[o,j]) + fp32(s) · acc ), the add in fp32, rounded once (round to nearest even
//         for bf16 and fp16, as torch's casts).
// Experts (a [E, out, in] weight) use expert e's factors for the elements of expert e.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/dtype.h"

namespace g4::lora {

// The factors of one delta, fp32, experts unpacked (PeftFactors' layout).
struct DeltaFactors {
  const float* a = nullptr;  // [E, r, in]
  const float* b = nullptr;  // [E, out, r]
  int64_t experts = 1;       // E (1 for a 2-D weight)
  int64_t rank = 0, in = 0, out = 0;
  float scale = 0;
};

// Whether lora-merge can write a merged weight of this dtype (BF16, F16, F32).
bool mergeable_dtype(DType dtype);

// Merges the elements [first, first + n) of the weight (flat index over [E, out, in] or [out, in]): `src` holds
// their bytes in `dtype`, `dst` receives the merged bytes in the same dtype (same size as src). Returns the
// number of merged values that are NaN or Inf. REQUIRES mergeable_dtype(dtype), first + n within the weight.
uint64_t merge_elements(DType dtype, std::span<const std::byte> src, std::span<std::byte> dst, uint64_t first,
                        const DeltaFactors& f);

}  // namespace g4::lora
