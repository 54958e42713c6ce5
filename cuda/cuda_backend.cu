// The CUDA backend of ops.h: every op on one stream of device 0, kernels from kernels.h, GEMMs from gemm.h, memory
// from the context's stream-ordered pool. Index arrays, masks and tables come from the host per call (routing,
// masks and RoPE tables are host code by design, ops.h).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <cublas_v2.h>

#include "cuda_check.h"
#include "device_context.h"
#include "forward/cuda_backend.h"
#include "gemm.h"
#include "kernels.h"
#include "weight_upload.h"

namespace g4::forward {
namespace {

using cuda::DeviceContext;

// Scores of the attention queries in flight: at most this many bytes of scratch (queries run in chunks).
constexpr size_t kAttentionScratchBytes = size_t{256} << 20;

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::shared_ptr<DeviceContext> ctx) : ctx_(std::move(ctx)) {}

  Device device() const override { return Device::kCuda; }
  void synchronize() override { G4_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  std::string describe() const override {
    const cudaDeviceProp& p = ctx_->properties();
    int runtime = 0, driver = 0, blas = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    cublasGetVersion(ctx_->blas(), &blas);
    return "cuda: " + std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
           std::to_string(p.multiProcessorCount) + " SMs, " + std::to_string(p.totalGlobalMem >> 30) + " GiB), CUDA runtime " +
           version_text(runtime) + ", driver " + version_text(driver) + ", cuBLAS " + std::to_string(blas / 10000) + "." +
           std::to_string(blas / 100 % 100) + "." + std::to_string(blas % 100) +
           "; cublasGemmEx fp32 compute, default math (no TF32, no emulation)";
  }

  // --- Memory.
  Tensor empty(int64_t rows, int64_t cols) override { return cuda::device_tensor(ctx_, DType::kF32, rows, cols); }

  Tensor zeros(int64_t rows, int64_t cols) override {
    Tensor t = empty(rows, cols);
    if (t.bytes()) G4_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.bytes(), stream()));  // all-zero bits: +0.0f
    return t;
  }

  Tensor upload(const Mat& host) override {
    Tensor t = empty(host.rows, host.cols);
    copy_to_device(host.v.data(), t.raw(), t.bytes());
    return t;
  }

  Mat download(const Tensor& x) override {
    check_activation(x);
    Mat m(x.rows(), x.cols());
    if (x.bytes()) G4_CUDA_CHECK(cudaMemcpyAsync(m.v.data(), x.raw(), x.bytes(), cudaMemcpyDeviceToHost, stream()));
    G4_CUDA_CHECK(cudaStreamSynchronize(stream()));
    return m;
  }

  Tensor weight(const Tensor& host, const Precision& p) override {
    const DType to = p.bf16() ? DType::kBF16 : DType::kF32;
    if (host.device() == Device::kCuda) {
      if (host.dtype() == to) return host;
      Tensor out = cuda::device_tensor(ctx_, to, host.rows(), host.cols());
      G4_CHECK(host.dtype() == DType::kF32 || host.dtype() == DType::kBF16);
      if (to == DType::kF32)
        cuda::bf16_to_f32(host.data<uint16_t>(), out.f32(), host.numel(), stream());
      else
        cuda::f32_to_bf16(host.f32(), out.data<uint16_t>(), host.numel(), stream());
      return out;
    }
    return cuda::upload_converted(ctx_, host, to);
  }

  Tensor parameter(const std::vector<float>& values, const Precision& p) override {
    Mat m(1, static_cast<int64_t>(values.size()));
    for (size_t i = 0; i < values.size(); ++i) m.v[i] = p.round(values[i]);
    return upload(m);
  }

  // --- Data movement.
  Tensor copy(const Tensor& x) override {
    G4_CHECK(x.device() == Device::kCuda);
    Tensor t = cuda::device_tensor(ctx_, x.dtype(), x.rows(), x.cols());
    if (x.bytes()) G4_CUDA_CHECK(cudaMemcpyAsync(t.raw(), x.raw(), x.bytes(), cudaMemcpyDeviceToDevice, stream()));
    return t;
  }

  Tensor select_columns(const Tensor& x, std::span<const int64_t> index) override {
    check_activation(x);
    for (int64_t j : index) G4_CHECK(j >= 0 && j < x.cols());
    const Tensor idx = indices(index);
    Tensor out = empty(x.rows(), static_cast<int64_t>(index.size()));
    cuda::select_columns(x.f32(), x.rows(), x.cols(), idx.data<int64_t>(), out.cols(), out.f32(), stream());
    return out;
  }

  void write_columns(Tensor& x, int64_t first, const Tensor& part) override {
    check_activation(x);
    check_activation(part);
    G4_CHECK(part.rows() == x.rows() && first >= 0 && first + part.cols() <= x.cols());
    cuda::write_columns(x.f32(), x.rows(), x.cols(), first, part.f32(), part.cols(), stream());
  }

  Tensor gather_rows(const Tensor& x, std::span<const int64_t> rows) override {
    check_activation(x);
    for (int64_t r : rows) G4_CHECK(r >= 0 && r < x.rows());
    const Tensor idx = indices(rows);
    Tensor out = empty(static_cast<int64_t>(rows.size()), x.cols());
    cuda::gather_rows(x.f32(), x.cols(), idx.data<int64_t>(), out.rows(), out.f32(), stream());
    return out;
  }

  void scatter_add_rows(Tensor& out, const Tensor& y, std::span<const int64_t> rows, std::span<const float> weights,
                        const Precision& p) override {
    check_activation(out);
    check_activation(y);
    G4_CHECK(y.rows() == static_cast<int64_t>(rows.size()) && weights.size() == rows.size() && y.cols() == out.cols());
    for (int64_t r : rows) G4_CHECK(r >= 0 && r < out.rows());
    std::vector<int64_t> sorted(rows.begin(), rows.end());
    std::sort(sorted.begin(), sorted.end());
    const bool distinct = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
    const Tensor idx = indices(rows);
    Tensor w = cuda::device_tensor(ctx_, DType::kF32, 1, static_cast<int64_t>(weights.size()));
    copy_to_device(weights.data(), w.raw(), w.bytes());
    cuda::scatter_add_rows(out.f32(), out.cols(), y.f32(), idx.data<int64_t>(), w.f32(), y.rows(), distinct, p.bf16(), stream());
  }

  // --- Compute.
  Tensor linear(const Tensor& x, const Tensor& w, const Precision& p) override {
    check_activation(x);
    G4_CHECK(w.device() == Device::kCuda && x.cols() == w.cols() && (w.dtype() == DType::kF32 || w.dtype() == DType::kBF16));
    const int64_t T = x.rows(), N = w.rows(), K = x.cols();
    if (K == 0) return zeros(T, N);
    Tensor out = empty(T, N);
    if (T == 0 || N == 0) return out;
    if (w.dtype() == DType::kBF16) {
      Tensor xb = cuda::device_tensor(ctx_, DType::kBF16, T, K);
      cuda::f32_to_bf16(x.f32(), xb.data<uint16_t>(), x.numel(), stream());
      cuda::gemm_bf16(ctx_->blas(), w.data<uint16_t>(), xb.data<uint16_t>(), out.f32(), T, N, K);
    } else {
      cuda::gemm_f32(ctx_->blas(), w.f32(), x.f32(), out.f32(), T, N, K);
    }
    if (p.bf16()) cuda::round_bf16(out.f32(), out.numel(), stream());  // the epilogue: the linear's rounding point
    return out;
  }

  void rms_norm(Tensor& x, const Tensor* w, int64_t dim, float eps, const Precision& p) override {
    check_activation(x);
    G4_CHECK(dim > 0 && x.numel() % dim == 0);
    if (w) {
      check_activation(*w);
      G4_CHECK(w->numel() == dim);
    }
    cuda::rms_norm(x.f32(), w ? w->f32() : nullptr, x.numel() / dim, dim, eps, p.bf16(), stream());
  }

  void rope(Tensor& x, int64_t hd, const Tensor& cos, const Tensor& sin, const Precision& p) override {
    check_activation(x);
    check_activation(cos);
    check_activation(sin);
    G4_CHECK(hd > 0 && hd % 2 == 0 && x.cols() % hd == 0 && cos.rows() == x.rows() && cos.cols() == hd && sin.rows() == x.rows() &&
             sin.cols() == hd);
    cuda::rope(x.f32(), x.rows(), x.cols() / hd, hd, cos.f32(), sin.f32(), p.bf16(), stream());
  }

  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t q_heads, int64_t kv_heads, int64_t hd,
                   const AttentionMask& mask, const Precision& p) override {
    check_activation(q);
    check_activation(k);
    check_activation(v);
    const int64_t B = mask.batch, S = mask.seq;
    G4_CHECK(kv_heads > 0 && q_heads % kv_heads == 0 && q.rows() == B * S && k.rows() == B * S && v.rows() == B * S &&
             q.cols() == q_heads * hd && k.cols() == kv_heads * hd && v.cols() == kv_heads * hd);
    G4_CHECK(static_cast<int64_t>(mask.key_is_real.size()) == B * S &&
             (mask.vision_group.empty() || static_cast<int64_t>(mask.vision_group.size()) == B * S));
    Tensor out = empty(q.rows(), q.cols());
    if (out.numel() == 0) return out;
    Tensor real = cuda::device_tensor(ctx_, DType::kU8, 1, B * S);
    copy_to_device(mask.key_is_real.data(), real.raw(), real.bytes());
    Tensor group;
    if (!mask.vision_group.empty()) {
      group = cuda::device_tensor(ctx_, DType::kI64, 1, B * S);
      copy_to_device(mask.vision_group.data(), group.raw(), group.bytes());
    }
    const int64_t total = B * q_heads * S;
    const int64_t chunk = std::clamp<int64_t>(static_cast<int64_t>(kAttentionScratchBytes / (sizeof(float) * static_cast<size_t>(S))), 1, total);
    Tensor scratch = empty(chunk, S);
    const cuda::AttentionShape shape{B, S, q_heads, kv_heads, hd, mask.window ? *mask.window : 0};
    cuda::attention(q.f32(), k.f32(), v.f32(), out.f32(), shape, real.data<uint8_t>(), group.defined() ? group.data<int64_t>() : nullptr,
                    scratch.f32(), chunk, p.bf16(), stream());
    return out;
  }

  void gelu_tanh_mul(Tensor& gate, const Tensor& up, const Precision& p) override {
    check_same(gate, up);
    cuda::geglu(gate.f32(), up.f32(), gate.numel(), p.bf16(), stream());
  }
  void gelu_tanh(Tensor& x, const Precision& p) override {
    check_activation(x);
    cuda::gelu_tanh(x.f32(), x.numel(), p.bf16(), stream());
  }
  void add(Tensor& x, const Tensor& y, const Precision& p) override {
    check_same(x, y);
    cuda::add(x.f32(), y.f32(), x.numel(), p.bf16(), stream());
  }
  void mul(Tensor& x, const Tensor& y, const Precision& p) override {
    check_same(x, y);
    cuda::mul(x.f32(), y.f32(), x.numel(), p.bf16(), stream());
  }
  void scale(Tensor& x, float s, const Precision& p) override {
    check_activation(x);
    cuda::scale(x.f32(), s, x.numel(), p.bf16(), stream());
  }
  void scale_columns(Tensor& x, const Tensor& v, const Precision& p) override {
    check_activation(x);
    check_activation(v);
    G4_CHECK(v.numel() == x.cols());
    cuda::scale_columns(x.f32(), v.f32(), x.rows(), x.cols(), p.bf16(), stream());
  }
  void softcap(Tensor& x, float cap, const Precision& p) override {
    check_activation(x);
    cuda::softcap(x.f32(), cap, x.numel(), p.bf16(), stream());
  }

 private:
  cudaStream_t stream() const { return ctx_->stream(); }

  static void check_activation(const Tensor& x) { G4_CHECK(x.defined() && x.device() == Device::kCuda && x.dtype() == DType::kF32); }
  static void check_same(const Tensor& x, const Tensor& y) {
    check_activation(x);
    check_activation(y);
    G4_CHECK(x.numel() == y.numel());
  }

  // A small host array on the device (pageable source: cudaMemcpyAsync returns once it has taken the bytes).
  void copy_to_device(const void* host, std::byte* device, size_t bytes) {
    if (bytes) G4_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream()));
  }

  Tensor indices(std::span<const int64_t> index) {
    Tensor t = cuda::device_tensor(ctx_, DType::kI64, 1, static_cast<int64_t>(index.size()));
    copy_to_device(index.data(), t.raw(), t.bytes());
    return t;
  }

  std::shared_ptr<DeviceContext> ctx_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_cuda_backend() {
  G4_ASSIGN_OR_RETURN(std::shared_ptr<DeviceContext> ctx, DeviceContext::create());
  return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(std::move(ctx)));
}

}  // namespace g4::forward
