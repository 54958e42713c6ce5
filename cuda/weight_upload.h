// Host bytes to the device through the context's two pinned staging buffers, in chunks used in turn (the copy of
// one chunk overlaps the memcpy into the other), converting on the device where the stored type differs from the
// type the GEMM multiplies in. This is how weights stream to the GPU one use at a time, so a model need never be
// resident all at once.
#pragma once

#include <memory>

#include "device_context.h"
#include "forward/tensor.h"

namespace g4::cuda {

// `host` (any float dtype; bf16 and f32 are converted on the device) as a device tensor of `to` (kBF16 or kF32):
// f32 -> bf16 rounds to nearest even, as from_pretrained(dtype=bfloat16) does; bf16 -> f32 is exact.
forward::Tensor upload_converted(const std::shared_ptr<DeviceContext>& ctx, const forward::Tensor& host, DType to);

// Raw bytes, no conversion.
void upload_bytes(DeviceContext& ctx, const std::byte* host, std::byte* device, size_t bytes);

}  // namespace g4::cuda
