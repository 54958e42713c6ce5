// A safe pickle reader: protocols 2-5, a fixed opcode set, globals only from a caller-given allowlist,
// and no code execution. The result is a PyValue tree; calls and object constructions stay nodes naming
// their global. Hostile bytes give a kCorruption or kNotSupported Status, never a crash: every length is
// bounds-checked, and operations, memo size and nesting depth are capped.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/status.h"
#include "runtime/torch/py_value.h"

namespace g4::torch {

inline constexpr size_t kMaxPickleOps = 50'000'000;
inline constexpr uint32_t kMaxPickleDepth = 200;

struct PickleOptions {
  // Decides whether GLOBAL module.name may appear. Null allows nothing.
  std::function<bool(const std::string& module_dot_name)> allow_global;
};

// The globals torch.load(weights_only=True) resolves that Megatron checkpoints use: OrderedDict, tensor and
// storage rebuilders, storage classes, dtypes, torch.Size/device, _codecs.encode, Namespace, SimpleNamespace.
bool torch_weights_only_global(const std::string& module_dot_name);
// True for globals that run code or reach the system when a Python unpickler calls them (os.system,
// subprocess.*, builtins.eval, importlib.*, ...): never part of a checkpoint, so a pickle naming one is an attack.
bool names_code_execution(const std::string& module_dot_name);

Result<PyPtr> pickle_loads(std::span<const std::byte> bytes, const PickleOptions& options, std::string_view where);

}  // namespace g4::torch
