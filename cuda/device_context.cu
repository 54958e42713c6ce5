#include "device_context.h"

#include <cstdint>
#include <cstdio>
#include <string>

#include "cuda_check.h"

namespace g4::cuda {

void cuda_failed(const char* file, int line, const char* call, const char* reason) {
  const std::string what = std::string(call) + ": " + reason;
  ::g4::check_failed(file, line, what.c_str());
}

Result<std::shared_ptr<DeviceContext>> DeviceContext::create() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return Status::not_supported(std::string("--device cuda: no CUDA device (") + cudaGetErrorString(err) + ")");
  if (count == 0) return Status::not_supported("--device cuda: no CUDA device (the runtime sees none)");
  std::shared_ptr<DeviceContext> ctx(new DeviceContext());
  auto fail = [](const char* what, cudaError_t e) {
    return Status::not_supported(std::string("--device cuda: ") + what + " failed (" + cudaGetErrorString(e) + ")");
  };
  if (cudaError_t e = cudaSetDevice(ctx->device_); e != cudaSuccess) return fail("cudaSetDevice", e);
  if (cudaError_t e = cudaGetDeviceProperties(&ctx->prop_, ctx->device_); e != cudaSuccess) return fail("cudaGetDeviceProperties", e);
  if (cudaError_t e = cudaStreamCreateWithFlags(&ctx->stream_, cudaStreamNonBlocking); e != cudaSuccess) return fail("cudaStreamCreate", e);
  cudaMemPool_t pool = nullptr;
  if (cudaError_t e = cudaDeviceGetDefaultMemPool(&pool, ctx->device_); e != cudaSuccess) return fail("cudaDeviceGetDefaultMemPool", e);
  uint64_t keep = UINT64_MAX;
  if (cudaError_t e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep); e != cudaSuccess)
    return fail("cudaMemPoolSetAttribute", e);
  if (cublasCreate(&ctx->blas_) != CUBLAS_STATUS_SUCCESS) return Status::not_supported("--device cuda: cublasCreate failed");
  // One stream, one handle, its own workspace: cuBLAS's conditions for run-to-run identical results. Default
  // math: no TF32 (only CUBLAS_TF32_TENSOR_OP_MATH or a _FAST_TF32 compute type allow it), no BF16x9 emulation.
  const size_t workspace_bytes = size_t{32} << 20;
  if (cudaError_t e = cudaMalloc(&ctx->workspace_, workspace_bytes); e != cudaSuccess) return fail("cudaMalloc(cuBLAS workspace)", e);
  if (cublasSetStream(ctx->blas_, ctx->stream_) != CUBLAS_STATUS_SUCCESS ||
      cublasSetWorkspace(ctx->blas_, ctx->workspace_, workspace_bytes) != CUBLAS_STATUS_SUCCESS ||
      cublasSetMathMode(ctx->blas_, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS ||
      cublasSetPointerMode(ctx->blas_, CUBLAS_POINTER_MODE_HOST) != CUBLAS_STATUS_SUCCESS)
    return Status::not_supported("--device cuda: setting up the cuBLAS handle failed");
  for (Staging& s : ctx->staging_) {
    void* host = nullptr;
    if (cudaError_t e = cudaMallocHost(&host, kStagingBytes); e != cudaSuccess) return fail("cudaMallocHost(staging)", e);
    s.host = static_cast<std::byte*>(host);
    if (cudaError_t e = cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming); e != cudaSuccess) return fail("cudaEventCreate", e);
  }
  return ctx;
}

DeviceContext::~DeviceContext() {
  // Errors here cannot be acted on; the process is tearing the device state down anyway.
  if (stream_) cudaStreamSynchronize(stream_);
  for (Staging& s : staging_) {
    if (s.copied) cudaEventDestroy(s.copied);
    if (s.host) cudaFreeHost(s.host);
  }
  if (blas_) cublasDestroy(blas_);
  if (workspace_) cudaFree(workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

void* DeviceContext::allocate(size_t bytes) {
  void* p = nullptr;
  // At least one aligned unit: empty tensors still get a distinct, valid pointer.
  G4_CUDA_CHECK(cudaMallocAsync(&p, bytes ? bytes : 256, stream_));
  return p;
}

void DeviceContext::release(void* p) {
  if (p) cudaFreeAsync(p, stream_);
}

DeviceStorage::DeviceStorage(std::shared_ptr<DeviceContext> ctx, size_t bytes) : ctx_(std::move(ctx)), bytes_(bytes) {
  data_ = static_cast<std::byte*>(ctx_->allocate(bytes));
}

DeviceStorage::~DeviceStorage() { ctx_->release(data_); }

forward::Tensor device_tensor(const std::shared_ptr<DeviceContext>& ctx, DType dtype, int64_t rows, int64_t cols) {
  const size_t bytes = static_cast<size_t>(rows * cols) * dtype_size(dtype);
  return forward::Tensor(dtype, rows, cols, std::make_shared<DeviceStorage>(ctx, bytes));
}

}  // namespace g4::cuda
