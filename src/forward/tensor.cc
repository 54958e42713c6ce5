#include "forward/tensor.h"

#include <cstdlib>
#include <new>

#include "runtime/status.h"

namespace g4::forward {
namespace {

class OwnedHost final : public Storage {
 public:
  explicit OwnedHost(size_t bytes) : bytes_(bytes) {
    // Uninitialised on purpose: zeroing every activation cost ~15 % of a forward in page faults and memset.
    data_ = static_cast<std::byte*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64));
    if (!data_) throw std::bad_alloc();
  }
  ~OwnedHost() override { std::free(data_); }
  std::byte* data() override { return data_; }
  size_t bytes() const override { return bytes_; }
  Device device() const override { return Device::kCpu; }

 private:
  std::byte* data_ = nullptr;
  size_t bytes_;
};

class BorrowedHost final : public Storage {
 public:
  BorrowedHost(const std::byte* data, size_t bytes, std::function<void()> on_release)
      : data_(const_cast<std::byte*>(data)), bytes_(bytes), on_release_(std::move(on_release)) {}
  ~BorrowedHost() override {
    if (on_release_) on_release_();
  }
  // Mapped checkpoints are read-only: no op writes a weight (weights are never the target of an in-place op).
  std::byte* data() override { return data_; }
  size_t bytes() const override { return bytes_; }
  Device device() const override { return Device::kCpu; }

 private:
  std::byte* data_;
  size_t bytes_;
  std::function<void()> on_release_;
};

}  // namespace

std::string_view device_name(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

std::shared_ptr<Storage> host_storage(size_t bytes) { return std::make_shared<OwnedHost>(bytes); }

std::shared_ptr<Storage> host_view(const std::byte* data, size_t bytes, std::function<void()> on_release) {
  return std::make_shared<BorrowedHost>(data, bytes, std::move(on_release));
}

Tensor::Tensor(DType dtype, int64_t rows, int64_t cols, std::shared_ptr<Storage> storage, size_t offset)
    : dtype_(dtype), rows_(rows), cols_(cols), storage_(std::move(storage)), offset_(offset) {
  G4_CHECK(rows >= 0 && cols >= 0 && storage_ && offset_ + bytes() <= storage_->bytes());
}

Tensor Tensor::host(DType dtype, int64_t rows, int64_t cols) {
  return Tensor(dtype, rows, cols, host_storage(static_cast<size_t>(rows * cols) * dtype_size(dtype)));
}

Tensor Tensor::view(int64_t rows, int64_t cols) const {
  G4_CHECK(rows * cols == numel());
  return Tensor(dtype_, rows, cols, storage_, offset_);
}

Tensor Tensor::row_range(int64_t first, int64_t count) const {
  G4_CHECK(first >= 0 && count >= 0 && first + count <= rows_);
  return Tensor(dtype_, count, cols_, storage_, offset_ + static_cast<size_t>(first * cols_) * dtype_size(dtype_));
}

}  // namespace g4::forward
