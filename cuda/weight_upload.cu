#include "weight_upload.h"

#include <cstring>
#include <vector>

#include "cuda_check.h"
#include "kernels.h"

namespace g4::cuda {
namespace {

// Chunk by chunk: host -> pinned staging -> (device scratch -> converted into place | straight into place).
template <class Consume>
void stream_chunks(DeviceContext& ctx, const std::byte* host, size_t bytes, Consume&& consume) {
  size_t chunk = 0;
  for (size_t off = 0; off < bytes; off += DeviceContext::kStagingBytes, ++chunk) {
    const size_t len = bytes - off < DeviceContext::kStagingBytes ? bytes - off : DeviceContext::kStagingBytes;
    DeviceContext::Staging& st = ctx.staging()[chunk % 2];
    G4_CUDA_CHECK(cudaEventSynchronize(st.copied));  // its previous chunk has left the buffer
    std::memcpy(st.host, host + off, len);
    consume(st, off, len);
    G4_CUDA_CHECK(cudaEventRecord(st.copied, ctx.stream()));
  }
}

}  // namespace

void upload_bytes(DeviceContext& ctx, const std::byte* host, std::byte* device, size_t bytes) {
  stream_chunks(ctx, host, bytes, [&](DeviceContext::Staging& st, size_t off, size_t len) {
    G4_CUDA_CHECK(cudaMemcpyAsync(device + off, st.host, len, cudaMemcpyHostToDevice, ctx.stream()));
  });
}

forward::Tensor upload_converted(const std::shared_ptr<DeviceContext>& ctx, const forward::Tensor& host, DType to) {
  G4_CHECK(to == DType::kBF16 || to == DType::kF32);
  forward::Tensor out = device_tensor(ctx, to, host.rows(), host.cols());
  const int64_t n = host.numel();
  if (n == 0) return out;
  const std::byte* src = host.raw();
  DType from = host.dtype();
  std::vector<float> widened;
  if (from != DType::kBF16 && from != DType::kF32) {  // f16 or f64 checkpoints: widen on the host, then as f32
    G4_CHECK(dtype_converts_to_f32(from));
    widened.resize(static_cast<size_t>(n));
    to_f32(from, src, widened.data(), widened.size());
    src = reinterpret_cast<const std::byte*>(widened.data());
    from = DType::kF32;
  }
  if (from == to) {
    upload_bytes(*ctx, src, out.raw(), out.bytes());
    return out;
  }
  // Converting: each chunk lands in a device scratch the size of a staging buffer, then is converted into place.
  forward::Tensor scratch = device_tensor(ctx, DType::kU8, 2, static_cast<int64_t>(DeviceContext::kStagingBytes));
  const size_t in_size = dtype_size(from);
  size_t chunk = 0;
  stream_chunks(*ctx, src, static_cast<size_t>(n) * in_size, [&](DeviceContext::Staging& st, size_t off, size_t len) {
    std::byte* dev = scratch.raw() + (chunk++ % 2) * DeviceContext::kStagingBytes;
    G4_CUDA_CHECK(cudaMemcpyAsync(dev, st.host, len, cudaMemcpyHostToDevice, ctx->stream()));
    const int64_t first = static_cast<int64_t>(off / in_size), count = static_cast<int64_t>(len / in_size);
    if (from == DType::kBF16)
      bf16_to_f32(reinterpret_cast<const uint16_t*>(dev), out.f32() + first, count, ctx->stream());
    else
      f32_to_bf16(reinterpret_cast<const float*>(dev), out.data<uint16_t>() + first, count, ctx->stream());
  });
  return out;
}

}  // namespace g4::cuda
