"""Hostile pickles and an editor for DCP `.metadata` files, for the bad-input catalogue (standard library only).

The hostile pickles are written opcode by opcode (Python's pickler would refuse most of them). Each payload that
would execute code runs `touch pwned` in the current directory, so a case can check that nothing ran.

`Metadata` loads a `.metadata` pickle without torch: every global becomes a stub class under the same module and
name, which records its constructor arguments and state and pickles back to the same opcodes. Tests edit the
plain dicts and lists inside and write the file again.
"""
import copyreg
import pickle
import struct
import sys
import types

PWN = "touch pwned"


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module, name, *str_args):
    """GLOBAL module.name, a tuple of string arguments, REDUCE: `module.name(*args)` on load."""
    return _global(module, name) + b"(" + b"".join(_str(a) for a in str_args) + b"tR"


def wrap(body):
    return b"\x80\x02" + body + b"."


HOSTILE = {
    # Code execution: every way a pickle can call a global. A safe reader refuses the global itself.
    "global-os-system": wrap(call("os", "system", PWN)),
    "global-posix-system": wrap(call("posix", "system", PWN)),
    "global-builtins-eval": wrap(call("builtins", "eval", f"__import__('os').system({PWN!r})")),
    "global-builtins-exec": wrap(call("builtins", "exec", f"import os; os.system({PWN!r})")),
    "global-subprocess-popen": wrap(_global("subprocess", "Popen") + b"(" + b"(" + _str("touch") + _str("pwned") +
                                    b"ltR"),
    "stack-global-os-system": b"\x80\x04" + b"\x8c\x02os\x8c\x06system\x93" + b"(" + _str(PWN) + b"tR.",
    "inst-os-system": b"(" + _str(PWN) + b"ios\nsystem\n.",
    "obj-os-system": b"(" + _global("os", "system") + _str(PWN) + b"o.",
    # An allowed-looking module path with a dangerous attribute, and a nested attribute lookup.
    "global-torch-attr-escape": wrap(call("torch._utils", "os.system", PWN)),
    "global-collections-dunder": wrap(call("collections", "__builtins__.eval", "1")),
    # Structure: references that loop or explode, and nesting past any sane depth.
    "self-referencing-list": wrap(b"]q\x00h\x00a"),
    "self-referencing-dict": wrap(b"}q\x00" + _str("self") + b"h\x00s"),
    "mutual-reference": wrap(b"]q\x00]q\x01h\x00ah\x01a"),
    "dag-2^60-paths": wrap(b"]q\x00" + b"".join(b"(h" + bytes([i]) + b"h" + bytes([i]) + b"lq" + bytes([i + 1])
                                                   for i in range(60))),
    "nesting-100000-lists": wrap(b"]" * 100_000 + b"a" * 99_999),
    "nesting-100000-marks": wrap(b"(" * 100_000 + b"l" * 100_000),
    # Lengths and indices past the data.
    "binunicode-length-past-eof": b"\x80\x02X\xff\xff\xff\xffabc.",
    "binbytes8-length-2^63": b"\x80\x04\x8e" + struct.pack("<Q", 2**63) + b"abc.",
    "long4-length-past-eof": b"\x80\x02\x8b\xff\xff\xff\x7f\x01.",
    "memo-get-undefined": wrap(b"h\x07"),
    "long-binget-2^32-1": wrap(b"j\xff\xff\xff\xff"),
    "append-on-empty-stack": wrap(b"a"),
    "stop-on-empty-stack": b"\x80\x02.",
    "mark-never-closed": wrap(b"(K\x01"),
    "no-stop": b"\x80\x02K\x01",
    "protocol-6": b"\x80\x06K\x01.",
    "unknown-opcode": b"\x80\x02\xffK\x01.",
    "empty": b"",
}


# --- Editing `.metadata` with stub classes.

class _Stub:
    """An instance of a class or a call result the pickle names; pickles back as it came."""

    def __new__(cls, *args):
        obj = object.__new__(cls)
        obj._args, obj._state, obj._called = args, None, False
        return obj

    def __init__(self, *args):
        self._called = True

    def __setstate__(self, state):
        self._state = state

    def __reduce_ex__(self, protocol):
        if self._called:
            return (type(self), self._args, self._state)
        return (copyreg.__newobj__, (type(self),) + self._args, self._state)

    # Dict-state attribute access (chunk.state["offsets"] reads as chunk["offsets"]).
    def __getitem__(self, key):
        return self._state[key]

    def __setitem__(self, key, value):
        self._state[key] = value


def _stub_class(module, name):
    mod = sys.modules.get(module)
    if mod is None or not getattr(mod, "__g4_stub__", False):
        mod = types.ModuleType(module)
        mod.__g4_stub__ = True
        sys.modules[module] = mod
    if not hasattr(mod, name):
        cls = type(name, (_Stub,), {"__module__": module, "__qualname__": name})
        setattr(mod, name, cls)
    return getattr(mod, name)


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _stub_class(module, name)


def new(module, name, state):
    """An object the way pickle builds a dataclass: NEWOBJ of the class, then BUILD with `state`."""
    cls = _stub_class(module, name)
    obj = cls.__new__(cls)
    obj._state = state
    return obj


def size(*dims):
    """A torch.Size stub (what the metadata stores for shapes and offsets)."""
    return _stub_class("torch", "Size")((tuple(dims)))


class Metadata:
    """A loaded `.metadata`: `tensors` maps fqn -> TensorStorageMetadata stub, `storage` maps MetadataIndex stubs
    to _StorageInfo stubs; both edited in place, then `save`d."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.root = _StubUnpickler(f).load()
        self.tensors = self.root["state_dict_metadata"]
        self.storage = self.root["storage_data"]

    def chunks(self, fqn):
        return self.tensors[fqn]["chunks"]

    def tensor_size(self, fqn):
        return list(self.tensors[fqn]["size"]._args[0])

    def set_tensor_size(self, fqn, dims):
        self.tensors[fqn]["size"] = size(*dims)

    def storage_of(self, fqn, chunk_index=0):
        """The _StorageInfo of chunk `chunk_index` of `fqn` (matched by fqn and the chunk's offsets)."""
        offsets = self.chunks(fqn)[chunk_index]["offsets"]._args[0]
        for index, info in self.storage.items():
            if index["fqn"] == fqn and index["offset"] is not None and tuple(index["offset"]._args[0]) == tuple(offsets):
                return info
        raise KeyError(fqn)

    def save(self, path):
        with open(path, "wb") as f:
            pickle.dump(self.root, f, protocol=2)
