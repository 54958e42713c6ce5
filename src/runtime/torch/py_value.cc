#include "runtime/torch/py_value.h"

#include <algorithm>

namespace g4::torch {

std::string PyValue::global_name() const {
  std::string out = s;
  auto nl = out.find('\n');
  if (nl != std::string::npos) out[nl] = '.';
  return out;
}

PyPtr PyValue::get(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (size_t k = 0; k + 1 < items.size(); k += 2)
    if (items[k]->kind == Kind::kStr && items[k]->s == key) return items[k + 1];
  return nullptr;
}

namespace {
PyPtr make(PyValue v) {
  for (const PyPtr& item : v.items)
    if (item) v.depth = std::max(v.depth, item->depth + 1);
  return std::make_shared<const PyValue>(std::move(v));
}
}  // namespace

PyPtr py_none() { return make({}); }
PyPtr py_bool(bool v) { PyValue x; x.kind = PyValue::Kind::kBool; x.b = v; return make(std::move(x)); }
PyPtr py_int(int64_t v) { PyValue x; x.kind = PyValue::Kind::kInt; x.i = v; return make(std::move(x)); }
PyPtr py_float(double v) { PyValue x; x.kind = PyValue::Kind::kFloat; x.f = v; return make(std::move(x)); }
PyPtr py_str(std::string v) { PyValue x; x.kind = PyValue::Kind::kStr; x.s = std::move(v); return make(std::move(x)); }
PyPtr py_bytes(std::string v) { PyValue x; x.kind = PyValue::Kind::kBytes; x.s = std::move(v); return make(std::move(x)); }
PyPtr py_tuple(std::vector<PyPtr> items) { PyValue x; x.kind = PyValue::Kind::kTuple; x.items = std::move(items); return make(std::move(x)); }
PyPtr py_list(std::vector<PyPtr> items) { PyValue x; x.kind = PyValue::Kind::kList; x.items = std::move(items); return make(std::move(x)); }
PyPtr py_dict(std::vector<std::pair<PyPtr, PyPtr>> items) {
  PyValue x;
  x.kind = PyValue::Kind::kDict;
  for (auto& [k, v] : items) x.items.push_back(std::move(k)), x.items.push_back(std::move(v));
  return make(std::move(x));
}
PyPtr py_global(const std::string& module, const std::string& name) {
  PyValue x;
  x.kind = PyValue::Kind::kGlobal;
  x.s = module + "\n" + name;
  return make(std::move(x));
}
PyPtr py_call(PyPtr callable, std::vector<PyPtr> args) {
  PyValue x;
  x.kind = PyValue::Kind::kCall;
  x.items = {std::move(callable), py_tuple(std::move(args))};
  return make(std::move(x));
}
PyPtr py_object(PyPtr cls, std::vector<PyPtr> args, PyPtr state) {
  PyValue x;
  x.kind = PyValue::Kind::kObject;
  x.items = {std::move(cls), py_tuple(std::move(args)), state ? std::move(state) : py_none()};
  return make(std::move(x));
}
PyPtr py_persistent_id(PyPtr id) {
  PyValue x;
  x.kind = PyValue::Kind::kPersistentId;
  x.items = {std::move(id)};
  return make(std::move(x));
}

}  // namespace g4::torch
