// What the CUDA backend owns, shared by it and every device tensor it made (a tensor may outlive the backend, so
// its memory is returned through a context that is still alive): device 0, one stream, one cuBLAS handle with its
// own workspace, the stream-ordered allocator, and the pinned staging buffers weights travel through.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "forward/tensor.h"
#include "runtime/status.h"

namespace g4::cuda {

class DeviceContext {
 public:
  // An error (one line) when the runtime sees no device or cannot set one up.
  static Result<std::shared_ptr<DeviceContext>> create();
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  const cudaDeviceProp& properties() const { return prop_; }
  int device() const { return device_; }

  // Stream-ordered device memory from the device's default pool (kept cached: the release threshold is the whole
  // pool, so a layer's weights freed are the next layer's, without a cudaMalloc per tensor).
  void* allocate(size_t bytes);
  void release(void* p);

  // Two pinned host buffers used in turn, each with an event that says the copy out of it has finished.
  static constexpr size_t kStagingBytes = size_t{32} << 20;
  struct Staging {
    std::byte* host = nullptr;
    cudaEvent_t copied = nullptr;
  };
  std::array<Staging, 2>& staging() { return staging_; }

 private:
  DeviceContext() = default;
  int device_ = 0;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  std::array<Staging, 2> staging_{};
};

// Device memory of `ctx` as tensor storage; freed on the context's stream when the last handle goes.
class DeviceStorage final : public forward::Storage {
 public:
  DeviceStorage(std::shared_ptr<DeviceContext> ctx, size_t bytes);
  ~DeviceStorage() override;
  std::byte* data() override { return data_; }
  size_t bytes() const override { return bytes_; }
  forward::Device device() const override { return forward::Device::kCuda; }

 private:
  std::shared_ptr<DeviceContext> ctx_;
  std::byte* data_ = nullptr;
  size_t bytes_ = 0;
};

forward::Tensor device_tensor(const std::shared_ptr<DeviceContext>& ctx, DType dtype, int64_t rows, int64_t cols);

}  // namespace g4::cuda
