// The tensor handle of the reference forward: element type, 2-D row-major shape, device and shared storage.
// Activations are f32 on the backend's device (in bf16 mode they hold bf16-rounded values, precision.h). Weights
// are host tensors in the checkpoint's stored type (a view of the mapped file where its bytes are contiguous)
// until Backend::weight() turns them into the type the op multiplies in, on the backend's device.
//
// Copying a handle shares the storage: an op that writes in place writes through every copy, so a value that
// must survive an in-place op is cloned first (Backend::copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "runtime/dtype.h"

namespace g4::forward {

enum class Device : uint8_t { kCpu, kCuda };
std::string_view device_name(Device d);  // "cpu", "cuda"

// Bytes a backend allocated, or a view of bytes someone else owns (a mapped checkpoint).
class Storage {
 public:
  virtual ~Storage() = default;
  virtual std::byte* data() = 0;
  virtual size_t bytes() const = 0;
  virtual Device device() const = 0;
};

// Host storage: owned bytes (64-byte aligned), or a borrowed range with an action run when the last handle goes
// (a mapped checkpoint's pages released, so resident memory stays bounded by the tensors in flight).
std::shared_ptr<Storage> host_storage(size_t bytes);
std::shared_ptr<Storage> host_view(const std::byte* data, size_t bytes, std::function<void()> on_release = {});

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, int64_t rows, int64_t cols, std::shared_ptr<Storage> storage, size_t offset = 0);

  // An owned host tensor, contents unspecified.
  static Tensor host(DType dtype, int64_t rows, int64_t cols);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t numel() const { return rows_ * cols_; }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  Device device() const { return storage_ ? storage_->device() : Device::kCpu; }

  std::byte* raw() const { return storage_->data() + offset_; }
  template <class T>
  T* data() const { return reinterpret_cast<T*>(raw()); }
  float* f32() const { return data<float>(); }  // REQUIRES dtype() == kF32
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset() const { return offset_; }

  // The same storage seen as rows × cols (same element count), or rows [first, first + count) of it.
  Tensor view(int64_t rows, int64_t cols) const;
  Tensor row_range(int64_t first, int64_t count) const;

 private:
  DType dtype_ = DType::kF32;
  int64_t rows_ = 0, cols_ = 0;
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
};

}  // namespace g4::forward
