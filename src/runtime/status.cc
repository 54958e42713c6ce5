#include "runtime/status.h"

#include <cstdio>
#include <cstdlib>

namespace g4 {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kCorruption: return "corrupt input";
    case ErrorCode::kNotSupported: return "not supported";
    case ErrorCode::kIOError: return "I/O error";
    case ErrorCode::kMismatch: return "mismatch";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown";
}

Status::Status(ErrorCode code, std::string message) {
  if (code != ErrorCode::kOk) state_ = std::make_shared<const State>(State{code, std::move(message)});
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return state_ ? state_->message : kEmpty;
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(error_code_name(code())) + ": " + message();
}

Status Status::with_context(std::string_view where) const {
  if (ok()) return *this;
  return Status(code(), std::string(where) + ": " + message());
}

void check_failed(const char* file, int line, const char* expr) {
  std::fprintf(stderr, "g4convert: internal check failed at %s:%d: %s\n", file, line, expr);
  std::abort();
}

}  // namespace g4
