#include "forward/cpu_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <dnnl.hpp>
#include <vector>

#include "forward/scalar_math.h"
#include "runtime/status.h"

namespace g4::forward {

// One matmul primitive per weight shape (N, K) with the token count a run-time dimension, so the expert GEMMs'
// varying row counts reuse it. Weights are viewed as [K, N] with strides (1, K): no transpose is materialised.
struct CpuGemm::Bf16Matmul {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<std::pair<int64_t, int64_t>, dnnl::matmul> primitives;
  std::vector<uint16_t> x_bf16;

  dnnl::matmul& primitive(int64_t n, int64_t k) {
    auto it = primitives.find({n, k});
    if (it != primitives.end()) return it->second;
    using dt = dnnl::memory::data_type;
    const dnnl::memory::dim any = DNNL_RUNTIME_DIM_VAL;
    dnnl::memory::desc src({any, k}, dt::bf16, {k, 1});
    dnnl::memory::desc wei({k, n}, dt::bf16, {1, k});
    dnnl::memory::desc dst({any, n}, dt::f32, {n, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), engine);
    return primitives.emplace(std::make_pair(n, k), dnnl::matmul(pd)).first->second;
  }
};

CpuGemm::CpuGemm(bool use_libraries) : use_libraries_(use_libraries) {
  if (!use_libraries_) return;
  // oneDNN says whether this CPU has a bf16 matmul by refusing to build one.
  try {
    auto m = std::make_unique<Bf16Matmul>();
    m->primitive(16, 16);
    bf16_ = std::move(m);
  } catch (const dnnl::error&) {
    bf16_.reset();
  }
}

CpuGemm::~CpuGemm() = default;

const char* CpuGemm::describe() const {
  if (!use_libraries_) return "OpenMP loops";
  return bf16_ ? "OpenBLAS sgemm (f32), oneDNN matmul (bf16)" : "OpenBLAS sgemm (f32; bf16 weights widened per block: no bf16 matmul on this CPU)";
}

void CpuGemm::bf16_library(const Tensor& x, const Tensor& w, const Tensor& out) {
  const int64_t T = x.rows(), K = x.cols(), N = w.rows();
  Bf16Matmul& m = *bf16_;
  m.x_bf16.resize(static_cast<size_t>(T * K));
  const float* xs = x.f32();
#pragma omp parallel for schedule(static) if (T * K > 65536)
  for (int64_t i = 0; i < T * K; ++i) m.x_bf16[static_cast<size_t>(i)] = scalar::bf16_bits(xs[i]);  // exact: bf16 values
  using dt = dnnl::memory::data_type;
  dnnl::memory src(dnnl::memory::desc({T, K}, dt::bf16, {K, 1}), m.engine, m.x_bf16.data());
  dnnl::memory wei(dnnl::memory::desc({K, N}, dt::bf16, {1, K}), m.engine, w.raw());
  dnnl::memory dst(dnnl::memory::desc({T, N}, dt::f32, {N, 1}), m.engine, out.raw());
  m.primitive(N, K).execute(m.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
  m.stream.wait();
}

void CpuGemm::bf16_widened(const Tensor& x, const Tensor& w, const Tensor& out) {
  const int64_t T = x.rows(), K = x.cols(), N = w.rows();
  // ~4 MiB of f32 rows (measured best of 512 KiB, 4 and 16 MiB), a multiple of 64 rows: sgemm's kernels for a
  // ragged last few rows accumulate in another order, and blocks ending mid-tile would give rows results that depend
  // on where a block starts (Megatron's fused QKV and HF's separate q/k/v would then differ in bf16).
  const int64_t block = std::max<int64_t>(64, (int64_t{1} << 20) / K / 64 * 64);
  widened_.resize(static_cast<size_t>(std::min(block, N) * K));
  const uint16_t* ws = w.data<uint16_t>();
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t rows = std::min(block, N - n0), count = rows * K;
    const uint16_t* src = ws + n0 * K;
#pragma omp parallel for schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; ++i) widened_[static_cast<size_t>(i)] = scalar::bf16_value(src[i]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(rows), static_cast<int>(K), 1.0f,
                x.f32(), static_cast<int>(K), widened_.data(), static_cast<int>(K), 0.0f, out.f32() + n0, static_cast<int>(N));
  }
}

void CpuGemm::run(const Tensor& x, const Tensor& w, const Tensor& out, bool x_is_bf16) {
  const int64_t T = x.rows(), K = x.cols(), N = w.rows();
  G4_CHECK(x.dtype() == DType::kF32 && out.dtype() == DType::kF32 && w.cols() == K && out.rows() == T && out.cols() == N);
  G4_CHECK(w.dtype() == DType::kF32 || w.dtype() == DType::kBF16);
  if (T == 0 || N == 0) return;
  float* o = out.f32();
  if (K == 0) {
    std::fill(o, o + T * N, 0.0f);
    return;
  }
  if (use_libraries_ && w.dtype() == DType::kF32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(N), static_cast<int>(K), 1.0f,
                x.f32(), static_cast<int>(K), w.f32(), static_cast<int>(K), 0.0f, o, static_cast<int>(N));
    return;
  }
  if (use_libraries_) return bf16_ && x_is_bf16 ? bf16_library(x, w, out) : bf16_widened(x, w, out);
  const float* a = x.f32();
  const bool bf16 = w.dtype() == DType::kBF16;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0;
      const float* xr = a + t * K;
      if (bf16) {
        const uint16_t* wr = w.data<uint16_t>() + n * K;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * scalar::bf16_value(wr[k]);
      } else {
        const float* wr = w.f32() + n * K;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * wr[k];
      }
      o[t * N + n] = acc;
    }
}

}  // namespace g4::forward
