// Status and Result<T>: the error style of every g4convert library function.
// A Status is OK or carries a code and a one-line message that says where (file, tensor), what, and
// expected vs got. Library code never prints or exits; only the CLI maps a Status to an exit code.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace g4 {

enum class ErrorCode : uint8_t {
  kOk,
  kInvalidArgument,  // the user asked for something impossible
  kNotFound,         // a file or tensor that must exist does not
  kCorruption,       // a file's bytes contradict its own format
  kNotSupported,     // well-formed, but outside what we handle
  kIOError,          // the operating system said no
  kMismatch,         // two inputs disagree (config vs tensors, index vs shard)
  kInternal,         // a broken invariant of our own
};

std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string message);

  static Status ok_status() { return Status(); }
  static Status invalid_argument(std::string msg) { return {ErrorCode::kInvalidArgument, std::move(msg)}; }
  static Status not_found(std::string msg) { return {ErrorCode::kNotFound, std::move(msg)}; }
  static Status corruption(std::string msg) { return {ErrorCode::kCorruption, std::move(msg)}; }
  static Status not_supported(std::string msg) { return {ErrorCode::kNotSupported, std::move(msg)}; }
  static Status io_error(std::string msg) { return {ErrorCode::kIOError, std::move(msg)}; }
  static Status mismatch(std::string msg) { return {ErrorCode::kMismatch, std::move(msg)}; }
  static Status internal(std::string msg) { return {ErrorCode::kInternal, std::move(msg)}; }

  bool ok() const { return state_ == nullptr; }
  ErrorCode code() const { return state_ ? state_->code : ErrorCode::kOk; }
  const std::string& message() const;
  // "code: message", for logs and test failures.
  std::string to_string() const;

  // Prepends "where: " to the message, so callers add the file or tensor they were working on.
  Status with_context(std::string_view where) const;

 private:
  struct State {
    ErrorCode code;
    std::string message;
  };
  std::shared_ptr<const State> state_;  // null means OK: success costs one pointer
};

// A value or the Status that explains why there is none. Never holds an OK status without a value.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design, like absl::StatusOr
  Result(Status status) : data_(std::move(status)) {
    if (std::get<Status>(data_).ok()) data_ = Status::internal("Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace g4

#define G4_CONCAT_INNER(a, b) a##b
#define G4_CONCAT(a, b) G4_CONCAT_INNER(a, b)

#define G4_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::g4::Status g4_status_ = (expr);            \
    if (!g4_status_.ok()) return g4_status_;     \
  } while (0)

#define G4_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#define G4_ASSIGN_OR_RETURN(lhs, expr) G4_ASSIGN_OR_RETURN_IMPL(G4_CONCAT(g4_result_, __LINE__), lhs, expr)

// Broken internal invariants (never bad input) abort with a location.
#define G4_CHECK(cond)                                                        \
  do {                                                                        \
    if (!(cond)) ::g4::check_failed(__FILE__, __LINE__, #cond);               \
  } while (0)

namespace g4 {
[[noreturn]] void check_failed(const char* file, int line, const char* expr);
}
