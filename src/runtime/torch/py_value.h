// A pickled Python object graph as plain data. The pickle writer serialises it and the safe reader builds
// it; nothing here ever executes Python semantics: a call to a global (REDUCE) or an object construction
// (NEWOBJ + BUILD) is kept as a node naming the global, for the caller to interpret against its own
// whitelist.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace g4::torch {

struct PyValue;
using PyPtr = std::shared_ptr<const PyValue>;

struct PyValue {
  enum class Kind : uint8_t {
    kNone, kBool, kInt, kFloat, kStr, kBytes,
    kTuple, kList, kDict,   // items; a dict's items alternate key, value
    kGlobal,                // module + name
    kCall,                  // REDUCE: callable(args...) — items[0] callable, items[1] args tuple
    kObject,                // NEWOBJ cls(args) then BUILD state — items[0] class, items[1] args, items[2] state
    kPersistentId,          // BINPERSID — items[0] the id
  };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // str, bytes; global "module\nname"
  std::vector<PyPtr> items;
  uint32_t depth = 1;  // nesting depth, bounded by readers so that hostile input cannot nest without limit
  // Set by the pickle reader once the value is placed inside another: from then on it is never modified, which
  // keeps every value acyclic and every depth exact.
  bool nested = false;

  bool is(Kind k) const { return kind == k; }
  // For kGlobal: "module.name" (joined with a dot for matching and messages).
  std::string global_name() const;
  // For kDict: the value stored under a string key, or null.
  PyPtr get(const std::string& key) const;
};

PyPtr py_none();
PyPtr py_bool(bool v);
PyPtr py_int(int64_t v);
PyPtr py_float(double v);
PyPtr py_str(std::string v);
PyPtr py_bytes(std::string v);
PyPtr py_tuple(std::vector<PyPtr> items);
PyPtr py_list(std::vector<PyPtr> items);
PyPtr py_dict(std::vector<std::pair<PyPtr, PyPtr>> items);
PyPtr py_global(const std::string& module, const std::string& name);
PyPtr py_call(PyPtr callable, std::vector<PyPtr> args);
PyPtr py_object(PyPtr cls, std::vector<PyPtr> args, PyPtr state);
PyPtr py_persistent_id(PyPtr id);

}  // namespace g4::torch
