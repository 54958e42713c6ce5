// The CPU backend's GEMMs, out[T, N] = x[T, K] · w[N, K]ᵀ accumulated in fp32: OpenBLAS sgemm for f32 weights,
// oneDNN's matmul for bf16 ones (bf16 inputs, fp32 accumulation and output: the library PyTorch's CPU bf16 linear
// calls; Debian's OpenBLAS 0.3.21 is built without cblas_sbgemm), or plain OpenMP loops for either (the
// comparison bench/forward.sh prints). Rounding the output is the caller's.
//
// oneDNN 2.6 (Debian 12) has bf16 matmul only on AVX-512 CPUs. Elsewhere (AVX2) a bf16 weight is widened to f32
// one block of rows at a time and multiplied by sgemm: the same numbers (a bf16 × bf16 product is exact in f32,
// and both accumulate in fp32), the weight still read from the checkpoint in bf16, memory one block.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "forward/tensor.h"

namespace g4::forward {

class CpuGemm {
 public:
  explicit CpuGemm(bool use_libraries);
  ~CpuGemm();
  CpuGemm(const CpuGemm&) = delete;
  CpuGemm& operator=(const CpuGemm&) = delete;

  // x: f32 [T, K]; w: f32 or bf16 [N, K]; out: f32 [T, N]. `x_is_bf16`: x holds bf16 values (bf16 mode), so a
  // bf16 matmul multiplies it exactly; otherwise a bf16 w is widened and x multiplied in f32.
  void run(const Tensor& x, const Tensor& w, const Tensor& out, bool x_is_bf16);
  const char* describe() const;

 private:
  struct Bf16Matmul;  // oneDNN objects, kept out of this header
  void bf16_library(const Tensor& x, const Tensor& w, const Tensor& out);
  void bf16_widened(const Tensor& x, const Tensor& w, const Tensor& out);
  bool use_libraries_;
  std::unique_ptr<Bf16Matmul> bf16_;  // null where oneDNN has no bf16 matmul on this CPU
  std::vector<float> widened_;        // bf16_widened's block of rows
};

}  // namespace g4::forward
