// CPU backend of ops.h: OpenMP over rows, heads and tokens; GEMMs in cpu_gemm.h. Host tensors are the device
// tensors, so weight() keeps a checkpoint view already in the GEMM's type as it is (no copy). Accumulations are
// fp32 except the norm's mean of squares, which uses double so the reference is at least as exact as PyTorch's
// pairwise sums.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "forward/cpu_gemm.h"
#include "forward/ops.h"
#include "forward/scalar_math.h"

namespace g4::forward {
namespace {

constexpr int64_t kParallelFrom = 65536;  // elements below which an elementwise loop stays on one thread

// Applies f(i) for i in [0, n), in parallel once the loop is big enough to pay for the threads.
template <class F>
void for_each_index(int64_t n, F&& f) {
#pragma omp parallel for schedule(static) if (n > kParallelFrom)
  for (int64_t i = 0; i < n; ++i) f(i);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bool use_libraries) : gemm_(use_libraries) {}

  Device device() const override { return Device::kCpu; }
  std::string describe() const override {
    return "cpu: " + std::to_string(omp_get_max_threads()) + " threads, " + gemm_.describe();
  }

  Tensor empty(int64_t rows, int64_t cols) override { return Tensor::host(DType::kF32, rows, cols); }
  Tensor zeros(int64_t rows, int64_t cols) override {
    Tensor t = empty(rows, cols);
    std::memset(t.raw(), 0, t.bytes());
    return t;
  }
  Tensor upload(const Mat& host) override {
    Tensor t = empty(host.rows, host.cols);
    std::copy(host.v.begin(), host.v.end(), t.f32());
    return t;
  }
  Mat download(const Tensor& x) override {
    G4_CHECK(x.dtype() == DType::kF32);
    Mat m(x.rows(), x.cols());
    std::copy(x.f32(), x.f32() + x.numel(), m.v.data());
    return m;
  }

  // A bf16 checkpoint weight stays the mapped checkpoint itself in both modes: its values are exact in f32, so an
  // fp32 model (from_pretrained(dtype=float32) upcasts exactly) multiplies the same numbers, and the GEMM widens
  // a block of rows at a time instead of this op writing a whole f32 copy (twice the bytes, every forward).
  Tensor weight(const Tensor& host, const Precision& p) override {
    const DType want = p.bf16() ? DType::kBF16 : DType::kF32;
    if (host.dtype() == want || host.dtype() == DType::kBF16) return host;
    G4_CHECK(dtype_converts_to_f32(host.dtype()));
    Tensor out = Tensor::host(want, host.rows(), host.cols());
    const int64_t n = host.numel();
    constexpr int64_t kBlock = 1 << 16;
    const size_t elem = dtype_size(host.dtype());
#pragma omp parallel for schedule(static)
    for (int64_t first = 0; first < n; first += kBlock) {
      const int64_t count = std::min(kBlock, n - first);
      float buf[kBlock];
      float* dst = want == DType::kF32 ? out.f32() + first : buf;
      to_f32(host.dtype(), host.raw() + static_cast<size_t>(first) * elem, dst, static_cast<size_t>(count));
      if (want == DType::kBF16)  // the model cast: a bf16 model holds bf16 weights, also when the checkpoint is f32
        for (int64_t i = 0; i < count; ++i) out.data<uint16_t>()[first + i] = scalar::bf16_bits(buf[i]);
    }
    return out;
  }
  Tensor parameter(const std::vector<float>& values, const Precision& p) override {
    Tensor t = empty(1, static_cast<int64_t>(values.size()));
    for (size_t i = 0; i < values.size(); ++i) t.f32()[i] = p.round(values[i]);
    return t;
  }

  Tensor copy(const Tensor& x) override {
    Tensor t = Tensor::host(x.dtype(), x.rows(), x.cols());
    std::memcpy(t.raw(), x.raw(), x.bytes());
    return t;
  }
  Tensor select_columns(const Tensor& x, std::span<const int64_t> index) override {
    const int64_t C = static_cast<int64_t>(index.size());
    for (int64_t c : index) G4_CHECK(c >= 0 && c < x.cols());
    Tensor out = empty(x.rows(), C);
    const float* in = x.f32();
    float* o = out.f32();
#pragma omp parallel for schedule(static) if (x.rows() * C > kParallelFrom)
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int64_t j = 0; j < C; ++j) o[t * C + j] = in[t * x.cols() + index[static_cast<size_t>(j)]];
    return out;
  }
  void write_columns(Tensor& x, int64_t first, const Tensor& part) override {
    G4_CHECK(part.rows() == x.rows() && first >= 0 && first + part.cols() <= x.cols());
    for (int64_t t = 0; t < x.rows(); ++t)
      std::copy(part.f32() + t * part.cols(), part.f32() + (t + 1) * part.cols(), x.f32() + t * x.cols() + first);
  }
  Tensor gather_rows(const Tensor& x, std::span<const int64_t> rows) override {
    Tensor out = empty(static_cast<int64_t>(rows.size()), x.cols());
    for (size_t i = 0; i < rows.size(); ++i) {
      G4_CHECK(rows[i] >= 0 && rows[i] < x.rows());
      std::copy(x.f32() + rows[i] * x.cols(), x.f32() + (rows[i] + 1) * x.cols(), out.f32() + static_cast<int64_t>(i) * x.cols());
    }
    return out;
  }
  void scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> weights,
                        const Precision& p) override {
    G4_CHECK(y.rows() == static_cast<int64_t>(rows.size()) && weights.size() == rows.size() && y.cols() == out.cols());
    const int64_t H = out.cols();
    for (size_t i = 0; i < rows.size(); ++i) {  // in order: the bf16 sum depends on it
      float* dst = out.f32() + rows[i] * H;
      const float* src = y.f32() + static_cast<int64_t>(i) * H;
      for (int64_t h = 0; h < H; ++h) dst[h] = scalar::expert_add(p.bf16(), dst[h], src[h], weights[i]);
    }
  }

  Tensor linear(const Tensor& x, const Tensor& w, const Precision& p) override {
    Tensor out = empty(x.rows(), w.rows());
    gemm_.run(x, w, out, p.bf16());
    p.round(std::span<float>(out.f32(), static_cast<size_t>(out.numel())));
    return out;
  }

  void rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) override {
    G4_CHECK(dim > 0 && x.numel() % dim == 0 && (!w || w->numel() == dim));
    const int64_t groups = x.numel() / dim;
    const float* wv = w ? w->f32() : nullptr;
    const bool bf16 = p.bf16();
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      float* y = x.f32() + g * dim;
      double sum = 0;
      for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(y[i]) * y[i];
      const float inv = scalar::rms_inverse(sum, dim, eps);
      for (int64_t i = 0; i < dim; ++i) y[i] = scalar::rms_element(bf16, y[i], inv, wv, i);
    }
  }

  void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) override {
    G4_CHECK(hd > 0 && x.cols() % hd == 0 && cos.rows() == x.rows() && cos.cols() == hd && sin.rows() == x.rows() && sin.cols() == hd);
    const int64_t heads = x.cols() / hd;
    const bool bf16 = p.bf16();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x.f32() + t * x.cols() + h * hd;
        const float* c = cos.f32() + t * hd;
        const float* s = sin.f32() + t * hd;
        std::vector<float> out(static_cast<size_t>(hd));
        for (int64_t j = 0; j < hd; ++j) out[static_cast<size_t>(j)] = scalar::rope_element(bf16, v, j, hd, c[j], s[j]);
        std::copy(out.begin(), out.end(), v);
      }
  }

  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t q_heads, int64_t kv_heads, int64_t hd,
                   const AttentionMask& mask, const Precision& p) override {
    const int64_t B = mask.batch, S = mask.seq, group = q_heads / kv_heads;
    G4_CHECK(q.rows() == B * S && k.rows() == B * S && v.rows() == B * S && q.cols() == q_heads * hd && k.cols() == kv_heads * hd &&
             v.cols() == kv_heads * hd);
    Tensor out = zeros(q.rows(), q.cols());
    const float *Q = q.f32(), *K = k.f32(), *V = v.f32();
    float* O = out.f32();
#pragma omp parallel for collapse(3) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < q_heads; ++h)
        for (int64_t i = 0; i < S; ++i) {
          const int64_t kvh = h / group;
          const float* qi = Q + (b * S + i) * q.cols() + h * hd;
          std::vector<float> scores(static_cast<size_t>(S));
          float max_score = -INFINITY;
          bool any = false;
          for (int64_t j = 0; j < S; ++j) {
            if (!mask.at(b, i, j)) continue;
            const float* kj = K + (b * S + j) * k.cols() + kvh * hd;
            float dot = 0;
            for (int64_t d = 0; d < hd; ++d) dot += qi[d] * kj[d];
            scores[static_cast<size_t>(j)] = dot;  // scale 1.0: QK-norm replaces 1/sqrt(hd)
            max_score = std::max(max_score, dot);
            any = true;
          }
          float* o = O + (b * S + i) * q.cols() + h * hd;
          if (!any) continue;
          float denom = 0;
          for (int64_t j = 0; j < S; ++j)
            if (mask.at(b, i, j)) denom += (scores[static_cast<size_t>(j)] = std::exp(scores[static_cast<size_t>(j)] - max_score));
          for (int64_t j = 0; j < S; ++j) {
            if (!mask.at(b, i, j)) continue;
            const float weight = scores[static_cast<size_t>(j)] / denom;
            const float* vj = V + (b * S + j) * v.cols() + kvh * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] += weight * vj[d];
          }
          for (int64_t d = 0; d < hd; ++d) o[d] = p.round(o[d]);
        }
    return out;
  }

  void gelu_tanh_mul(Tensor& gate, const Tensor& up, const Precision& p) override {
    G4_CHECK(gate.numel() == up.numel());
    float* g = gate.f32();
    const float* u = up.f32();
    for_each_index(gate.numel(), [&](int64_t i) { g[i] = scalar::geglu(p.bf16(), g[i], u[i]); });
  }
  void gelu_tanh(Tensor& x, const Precision& p) override {
    float* v = x.f32();
    for_each_index(x.numel(), [&](int64_t i) { v[i] = scalar::round_if(p.bf16(), scalar::gelu_tanh(v[i])); });
  }
  void add(Tensor& x, const Tensor& y, const Precision& p) override {
    G4_CHECK(x.numel() == y.numel());
    float* a = x.f32();
    const float* b = y.f32();
    for_each_index(x.numel(), [&](int64_t i) { a[i] = p.round(a[i] + b[i]); });
  }
  void mul(Tensor& x, const Tensor& y, const Precision& p) override {
    G4_CHECK(x.numel() == y.numel());
    float* a = x.f32();
    const float* b = y.f32();
    for_each_index(x.numel(), [&](int64_t i) { a[i] = p.round(a[i] * b[i]); });
  }
  void scale(Tensor& x, float s, const Precision& p) override {
    float* a = x.f32();
    for_each_index(x.numel(), [&](int64_t i) { a[i] = p.round(a[i] * s); });
  }
  void scale_columns(Tensor& x, const Tensor& v, const Precision& p) override {
    G4_CHECK(v.numel() == x.cols());
    float* a = x.f32();
    const float* s = v.f32();
    const int64_t C = x.cols();
    for_each_index(x.numel(), [&](int64_t i) { a[i] = p.round(a[i] * s[i % C]); });
  }
  void softcap(Tensor& x, float cap, const Precision& p) override {
    float* a = x.f32();
    for_each_index(x.numel(), [&](int64_t i) { a[i] = scalar::softcap(p.bf16(), a[i], cap); });
  }

 private:
  CpuGemm gemm_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(bool use_blas) { return std::make_unique<CpuBackend>(use_blas); }

}  // namespace g4::forward
