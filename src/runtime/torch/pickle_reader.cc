#include "runtime/torch/pickle_reader.h"

#include <bit>
#include <cstring>
#include <set>
#include <unordered_map>

namespace g4::torch {

bool torch_weights_only_global(const std::string& g) {
  static const std::set<std::string> kExact = {
      "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
      "torch._utils._rebuild_parameter", "torch.Size", "torch.device", "torch.serialization._get_layout",
      "_codecs.encode", "argparse.Namespace", "types.SimpleNamespace", "builtins.set", "builtins.bytearray",
      "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.Tensor",
  };
  static const std::set<std::string> kDtypes = {
      "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
      "int16", "short", "int8", "uint8", "bool", "float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64"};
  if (kExact.count(g)) return true;
  if (g.rfind("torch.", 0) == 0) {
    std::string rest = g.substr(6);
    if (rest.find('.') != std::string::npos) return false;
    if (kDtypes.count(rest)) return true;
    if (rest.size() > 7 && rest.compare(rest.size() - 7, 7, "Storage") == 0) return true;  // torch.BFloat16Storage
  }
  return false;
}

bool names_code_execution(const std::string& g) {
  static const std::set<std::string> kModules = {
      "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle", "_pickle", "marshal",
      "runpy", "pty", "ctypes", "multiprocessing", "code", "codeop", "webbrowser", "pdb", "timeit",
      "torch.hub", "torch.utils.cpp_extension", "torch.jit", "torch._dynamo"};  // not pathlib: DCP stores a PosixPath
  static const std::set<std::string> kBuiltins = {
      "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "__import__", "globals", "locals", "vars",
      "input", "breakpoint", "exit", "quit", "help", "memoryview", "type", "super", "classmethod", "staticmethod", "property"};
  const size_t dot = g.rfind('.');
  const std::string module = dot == std::string::npos ? "" : g.substr(0, dot), name = g.substr(dot + 1);
  if (module == "builtins" || module == "__builtin__") return kBuiltins.count(name) > 0;
  if (g == "torch.load" || g == "torch.save") return true;
  for (std::string m = module; !m.empty(); m = m.substr(0, m.rfind('.') == std::string::npos ? 0 : m.rfind('.')))
    if (kModules.count(m)) return true;
  return false;
}

namespace {

using K = PyValue::Kind;
using Mut = std::shared_ptr<PyValue>;

class Reader {
 public:
  Reader(std::span<const std::byte> b, const PickleOptions& o, std::string_view w) : bytes_(b), opts_(o), where_(w) {}

  Result<PyPtr> run() {
    for (size_t ops = 0;; ++ops) {
      if (ops > kMaxPickleOps) return fail("more than " + std::to_string(kMaxPickleOps) + " operations");
      if (pos_ >= bytes_.size()) return fail("ends without STOP (truncated?)");
      const size_t at = pos_;
      const uint8_t op = static_cast<uint8_t>(bytes_[pos_++]);
      Status s = step(op, at);
      if (!s.ok()) return s;
      if (done_) break;
    }
    if (stack_.size() != 1 || !marks_.empty()) return fail("STOP with a malformed stack");
    return PyPtr(stack_.back());
  }

 private:
  Status fail(const std::string& why) const {
    return Status::corruption(std::string(where_) + ": pickle " + why);
  }
  Status need(size_t n) const {
    if (bytes_.size() - pos_ < n) return fail("truncated at byte " + std::to_string(pos_));
    return {};
  }
  uint64_t le(size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[pos_ + k])) << (8 * k);
    pos_ += n;
    return v;
  }
  Result<std::string> take(uint64_t n) {
    if (n > bytes_.size() - pos_) return fail("length " + std::to_string(n) + " runs past the end");
    std::string s(reinterpret_cast<const char*>(bytes_.data()) + pos_, n);
    pos_ += n;
    return s;
  }
  Result<std::string> line() {
    const char* start = reinterpret_cast<const char*>(bytes_.data()) + pos_;
    const void* nl = std::memchr(start, '\n', bytes_.size() - pos_);
    if (!nl) return fail("GLOBAL without newline");
    std::string s(start, static_cast<const char*>(nl) - start);
    pos_ += s.size() + 1;
    return s;
  }

  Mut node(K kind) {
    auto v = std::make_shared<PyValue>();
    v->kind = kind;
    return v;
  }
  // Values are acyclic by construction, and every depth is exact: a value placed inside another (`adopt`) is
  // never modified again, so it can be neither its own descendant nor deepened behind its parents' backs. A
  // pickle that modifies a value after nesting it (what a self-referencing list, dict or object needs, and what
  // torch.save never writes for state dicts and DCP metadata) is refused.
  static void mark_nested(PyValue& parent, const PyPtr& child) {
    const_cast<PyValue&>(*child).nested = true;  // every value here was made by node(), never const
    parent.depth = std::max(parent.depth, child->depth + 1);
  }
  Status adopt(const Mut& parent, const PyPtr& child) {
    if (child == parent) return fail("puts a container inside itself (self-referencing values are not supported)");
    mark_nested(*parent, child);
    return {};
  }
  Status check_mutable(const Mut& target, const char* op) {
    if (target->nested)
      return fail(std::string(op) + " modifies a value already nested in another (a reference cycle?); not supported");
    return {};
  }
  Status check_depth(const Mut& v) {
    if (v->depth > kMaxPickleDepth) return fail("nests deeper than " + std::to_string(kMaxPickleDepth));
    return {};
  }
  Status push(Mut v) {
    for (const PyPtr& item : v->items) mark_nested(*v, item);  // a fresh value: none of its items is itself
    G4_RETURN_IF_ERROR(check_depth(v));
    stack_.push_back(std::move(v));
    return {};
  }
  Result<Mut> pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) return fail("pops an empty stack");
    Mut v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Result<std::vector<PyPtr>> pop_mark() {
    if (marks_.empty()) return fail("uses a MARK that was never set");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyPtr> items(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Result<Mut> top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) return fail("reads an empty stack");
    return stack_.back();
  }
  // Appending into a list or dict (or state into a REDUCE node) deepens it; keep the bound.
  Status add_items(const Mut& target, std::vector<PyPtr> items, const char* op) {
    G4_RETURN_IF_ERROR(check_mutable(target, op));
    for (auto& item : items) {
      G4_RETURN_IF_ERROR(adopt(target, item));
      target->items.push_back(std::move(item));
    }
    return check_depth(target);
  }
  Status global(const std::string& module, const std::string& name) {
    std::string dotted = module + "." + name;
    if (!opts_.allow_global || !opts_.allow_global(dotted))
      return Status::not_supported(std::string(where_) + ": pickle references '" + dotted + "', which is not on the allowlist");
    Mut g = node(K::kGlobal);
    g->s = module + "\n" + name;
    return push(g);
  }
  Status memo_put(uint64_t key) {
    if (stack_.empty()) return fail("memoizes an empty stack");
    if (memo_.size() > 10'000'000) return fail("memo is too large");
    memo_[key] = stack_.back();
    return {};
  }
  Status memo_get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return fail("reads memo entry " + std::to_string(key) + " that was never stored");
    stack_.push_back(it->second);
    return {};
  }
  Status integer_from_le(const std::string& b) {
    if (b.size() > 8) return Status::not_supported(std::string(where_) + ": pickle integer wider than 64 bits");
    uint64_t u = 0;
    for (size_t k = 0; k < b.size(); ++k) u |= static_cast<uint64_t>(static_cast<uint8_t>(b[k])) << (8 * k);
    if (!b.empty() && b.size() < 8 && (static_cast<uint8_t>(b.back()) & 0x80)) u |= ~uint64_t{0} << (8 * b.size());
    Mut v = node(K::kInt);
    v->i = static_cast<int64_t>(u);
    return push(v);
  }

  Status step(uint8_t op, size_t at) {
    switch (op) {
      case 0x80: G4_RETURN_IF_ERROR(need(1)); if (le(1) > 5) return fail("protocol above 5"); return {};
      case 0x95: G4_RETURN_IF_ERROR(need(8)); le(8); return {};  // FRAME: a length hint only
      case '.': done_ = true; return {};
      case '(': marks_.push_back(stack_.size()); return {};
      case 'N': return push(node(K::kNone));
      case 0x88: case 0x89: { Mut v = node(K::kBool); v->b = op == 0x88; return push(v); }
      case 'K': { G4_RETURN_IF_ERROR(need(1)); Mut v = node(K::kInt); v->i = static_cast<int64_t>(le(1)); return push(v); }
      case 'M': { G4_RETURN_IF_ERROR(need(2)); Mut v = node(K::kInt); v->i = static_cast<int64_t>(le(2)); return push(v); }
      case 'J': { G4_RETURN_IF_ERROR(need(4)); Mut v = node(K::kInt); v->i = static_cast<int32_t>(le(4)); return push(v); }
      case 0x8a: { G4_RETURN_IF_ERROR(need(1)); G4_ASSIGN_OR_RETURN(std::string b, take(le(1))); return integer_from_le(b); }
      case 0x8b: { G4_RETURN_IF_ERROR(need(4)); G4_ASSIGN_OR_RETURN(std::string b, take(le(4))); return integer_from_le(b); }
      case 'G': {
        G4_RETURN_IF_ERROR(need(8));
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(bytes_[pos_ + k]);
        pos_ += 8;
        Mut v = node(K::kFloat);
        v->f = std::bit_cast<double>(bits);
        return push(v);
      }
      case 'X': case 0x8c: case 0x8d: case 'U':
      case 'B': case 'C': case 0x8e: case 0x96: {
        const size_t n = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 'X' || op == 'B') ? 4 : 8;
        G4_RETURN_IF_ERROR(need(n));
        G4_ASSIGN_OR_RETURN(std::string s, take(le(n)));
        Mut v = node((op == 'X' || op == 0x8c || op == 0x8d || op == 'U') ? K::kStr : K::kBytes);
        v->s = std::move(s);
        return push(v);
      }
      case ')': return push(node(K::kTuple));
      case 0x85: case 0x86: case 0x87: {
        const size_t n = op - 0x84u;
        if (stack_.size() < n + (marks_.empty() ? 0 : marks_.back())) return fail("TUPLE" + std::to_string(n) + " on a short stack");
        Mut t = node(K::kTuple);
        t->items.assign(stack_.end() - static_cast<long>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        return push(t);
      }
      case 't': case 'l': case 'd': case 0x91: {
        G4_ASSIGN_OR_RETURN(std::vector<PyPtr> items, pop_mark());
        if (op == 'd' && items.size() % 2) return fail("DICT with an odd number of items");
        Mut v = node(op == 't' ? K::kTuple : op == 'd' ? K::kDict : K::kList);
        v->items = std::move(items);
        return push(v);
      }
      case ']': case 0x8f: return push(node(K::kList));  // sets are kept as lists
      case '}': return push(node(K::kDict));
      case 'a': {
        G4_ASSIGN_OR_RETURN(Mut item, pop());
        G4_ASSIGN_OR_RETURN(Mut list, top());
        if (!list->is(K::kList)) return fail("APPEND to a non-list");
        return add_items(list, {item}, "APPEND");
      }
      case 'e': case 0x90: {
        G4_ASSIGN_OR_RETURN(std::vector<PyPtr> items, pop_mark());
        G4_ASSIGN_OR_RETURN(Mut list, top());
        if (!list->is(K::kList)) return fail("APPENDS to a non-list");
        return add_items(list, std::move(items), "APPENDS");
      }
      case 's': {
        G4_ASSIGN_OR_RETURN(Mut value, pop());
        G4_ASSIGN_OR_RETURN(Mut key, pop());
        G4_ASSIGN_OR_RETURN(Mut dict, top());
        if (!dict->is(K::kDict) && !dict->is(K::kCall)) return fail("SETITEM on a non-dict");
        return add_items(dict, {key, value}, "SETITEM");
      }
      case 'u': {
        G4_ASSIGN_OR_RETURN(std::vector<PyPtr> items, pop_mark());
        if (items.size() % 2) return fail("SETITEMS with an odd number of items");
        G4_ASSIGN_OR_RETURN(Mut dict, top());
        // An OrderedDict is a REDUCE node here; its items are added after its (callable, args).
        if (!dict->is(K::kDict) && !dict->is(K::kCall)) return fail("SETITEMS on a non-dict");
        return add_items(dict, std::move(items), "SETITEMS");
      }
      case 'c': {
        G4_ASSIGN_OR_RETURN(std::string module, line());
        G4_ASSIGN_OR_RETURN(std::string name, line());
        return global(module, name);
      }
      case 0x93: {
        G4_ASSIGN_OR_RETURN(Mut name, pop());
        G4_ASSIGN_OR_RETURN(Mut module, pop());
        if (!module->is(K::kStr) || !name->is(K::kStr)) return fail("STACK_GLOBAL without two strings");
        return global(module->s, name->s);
      }
      case 'R': {
        G4_ASSIGN_OR_RETURN(Mut args, pop());
        G4_ASSIGN_OR_RETURN(Mut callable, pop());
        if (!callable->is(K::kGlobal) || !args->is(K::kTuple)) return fail("REDUCE needs a global and an argument tuple");
        Mut v = node(K::kCall);
        v->items = {callable, args};
        return push(v);
      }
      case 0x81: case 0x92: {
        Mut kwargs;
        if (op == 0x92) { G4_ASSIGN_OR_RETURN(kwargs, pop()); }
        G4_ASSIGN_OR_RETURN(Mut args, pop());
        G4_ASSIGN_OR_RETURN(Mut cls, pop());
        if (!cls->is(K::kGlobal) || !args->is(K::kTuple)) return fail("NEWOBJ needs a class and an argument tuple");
        Mut v = node(K::kObject);
        v->items = {cls, args, node(K::kNone)};
        return push(v);
      }
      case 'b': {
        G4_ASSIGN_OR_RETURN(Mut state, pop());
        G4_ASSIGN_OR_RETURN(Mut target, top());
        if (target->is(K::kObject)) {
          G4_RETURN_IF_ERROR(check_mutable(target, "BUILD"));
          G4_RETURN_IF_ERROR(adopt(target, state));
          target->items[2] = state;
          return check_depth(target);
        }
        if (target->is(K::kCall)) return add_items(target, {py_str("__setstate__"), state}, "BUILD");
        return fail("BUILD on an object it cannot hold state");
      }
      case 'Q': {
        G4_ASSIGN_OR_RETURN(Mut id, pop());
        Mut v = node(K::kPersistentId);
        v->items = {id};
        return push(v);
      }
      case 'q': G4_RETURN_IF_ERROR(need(1)); return memo_put(le(1));
      case 'r': G4_RETURN_IF_ERROR(need(4)); return memo_put(le(4));
      case 0x94: return memo_put(memo_.size());
      case 'h': G4_RETURN_IF_ERROR(need(1)); return memo_get(le(1));
      case 'j': G4_RETURN_IF_ERROR(need(4)); return memo_get(le(4));
      default: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "opcode 0x%02x at byte %zu is not supported", op, at);
        return Status::not_supported(std::string(where_) + ": pickle " + buf);
      }
    }
  }

  std::span<const std::byte> bytes_;
  const PickleOptions& opts_;
  std::string_view where_;
  size_t pos_ = 0;
  bool done_ = false;
  std::vector<Mut> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Mut> memo_;
};

}  // namespace

Result<PyPtr> pickle_loads(std::span<const std::byte> bytes, const PickleOptions& options, std::string_view where) {
  return Reader(bytes, options, where).run();
}

}  // namespace g4::torch
