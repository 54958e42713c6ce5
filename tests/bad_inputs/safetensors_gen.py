"""Reading, rewriting and breaking safetensors files for the bad-input catalogue (standard library only).

A file is (header dict, data bytes); `write` lays it out again, and the `corrupt_*` helpers each produce one
malformed variant of a valid file, named after what they break.
"""
import json
import math
import struct
from pathlib import Path

DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1}


def read(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def header_bytes(header):
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def write(path, header, data):
    h = header_bytes(header)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + data)


def write_raw_header(path, header_text, data=b""):
    """A file whose header is exactly `header_text` (bytes), however malformed."""
    Path(path).write_bytes(struct.pack("<Q", len(header_text)) + header_text + data)


def find(header, suffix):
    """The one tensor name ending in `suffix` (names differ between the causal and conditional forms)."""
    names = [k for k in header if k != "__metadata__" and k.endswith(suffix)]
    if len(names) != 1:
        raise KeyError(f"{suffix}: {len(names)} matches")
    return names[0]


def tensors(header, data):
    """[(name, dtype, shape, bytes)] in offset order."""
    out = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out.append((name, e["dtype"], list(e["shape"]), data[b:end]))
    return sorted(out, key=lambda t: header[t[0]]["data_offsets"][0])


def build(entries, metadata=None):
    """A well-formed (header, data) from [(name, dtype, shape, bytes)], packed in order."""
    header = {"__metadata__": metadata or {"format": "pt"}}
    data = bytearray()
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return header, bytes(data)


def rewrite(path, edit):
    """Rebuilds the file at `path` from edit(entries) -> entries (drop, add or change tensors)."""
    header, data = read(path)
    h, d = build(edit(tensors(header, data)), header.get("__metadata__"))
    write(path, h, d)


def set_values(path, suffix, index, value):
    """Sets element `index` of the (BF16/F32) tensor ending in `suffix` to `value` (e.g. NaN)."""
    header, data = read(path)
    name = find(header, suffix)
    e = header[name]
    data = bytearray(data)
    at = e["data_offsets"][0]
    if e["dtype"] == "F32":
        struct.pack_into("<f", data, at + 4 * index, value)
    elif e["dtype"] == "BF16":
        data[at + 2 * index:at + 2 * index + 2] = struct.pack("<f", value)[2:]
    else:
        raise ValueError(e["dtype"])
    write(path, header, bytes(data))


def nan():
    return math.nan


# --- Structural corruptions of the file at `path`, in place. Each keeps everything else valid.

def corrupt_empty(path):
    Path(path).write_bytes(b"")


def corrupt_short_length(path):
    Path(path).write_bytes(Path(path).read_bytes()[:4])


def corrupt_length_past_eof(path):
    raw = Path(path).read_bytes()
    Path(path).write_bytes(struct.pack("<Q", len(raw) + 100) + raw[8:])


def corrupt_length_huge(path):
    raw = Path(path).read_bytes()
    Path(path).write_bytes(struct.pack("<Q", 2**64 - 1) + raw[8:])


def corrupt_length_zero(path):
    raw = Path(path).read_bytes()
    Path(path).write_bytes(struct.pack("<Q", 0) + raw[8:])


def corrupt_header_not_json(path):
    _, data = read(path)
    write_raw_header(path, b"{\"a\": [1, 2," + b"\x00" * 20, data)


def corrupt_header_invalid_utf8(path):
    header, data = read(path)
    text = header_bytes(header).replace(b"format", b"f\xff\xfemat", 1)
    write_raw_header(path, text, data)


def corrupt_header_not_object(path):
    _, data = read(path)
    write_raw_header(path, b"[1, 2, 3]", data)


def corrupt_header_deep_nesting(path, depth=100_000):
    """A header whose __metadata__ nests arrays `depth` deep (a recursive JSON parser's stack)."""
    header, data = read(path)
    text = header_bytes(header)
    deep = b"[" * depth + b"]" * depth
    text = text.replace(b"\"__metadata__\":", b"\"__deep__\":" + deep + b",\"__metadata__\":", 1)
    write_raw_header(path, text, data)


def corrupt_truncated_data(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    Path(path).write_bytes(raw[:8 + n + (len(raw) - 8 - n) // 2])


def _edit_entry(path, suffix, change):
    header, data = read(path)
    change(header[find(header, suffix)], header)
    write(path, header, data)


Q = "layers.0.self_attn.q_proj.weight"
K = "layers.0.self_attn.k_proj.weight"


def corrupt_offsets_past_eof(path):
    def change(e, header):
        last = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        e["data_offsets"] = [last + 16, last + 16 + (e["data_offsets"][1] - e["data_offsets"][0])]
    _edit_entry(path, Q, change)


def corrupt_offsets_overlap(path):
    def change(e, header):
        other = header[find(header, K)]
        size = e["data_offsets"][1] - e["data_offsets"][0]
        e["data_offsets"] = [other["data_offsets"][0], other["data_offsets"][0] + size]
    _edit_entry(path, Q, change)


def corrupt_offsets_reversed(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("data_offsets", e["data_offsets"][::-1]))


def corrupt_offsets_not_integers(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("data_offsets", ["0", "x"]))


def corrupt_offsets_huge(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("data_offsets", [2**64 - 16, 2**64 - 1]))


def corrupt_dtype_unknown(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("dtype", "BF17"))


def corrupt_shape_bytes_mismatch(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("shape", [e["shape"][0] * 2] + e["shape"][1:]))


def corrupt_shape_negative(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("shape", [-e["shape"][0]] + e["shape"][1:]))


def corrupt_shape_overflow(path):
    """A shape whose element count is a multiple of 2**64 (wraps to 0 in unchecked 64-bit arithmetic)."""
    _edit_entry(path, Q, lambda e, h: e.__setitem__("shape", [2**32, 2**32] + e["shape"]))


def corrupt_shape_rank_huge(path):
    _edit_entry(path, Q, lambda e, h: e.__setitem__("shape", [1] * 10_000 + e["shape"]))


def corrupt_duplicate_name(path):
    """The same tensor name twice in the JSON object (a dict-based reader silently keeps one)."""
    header, data = read(path)
    name = find(header, Q)
    text = header_bytes(header)
    key = json.dumps(name).encode()
    entry = json.dumps(header[find(header, K)], separators=(",", ":")).encode()
    text = text.replace(b"{" + json.dumps("__metadata__").encode(), b"{" + key + b":" + entry + b"," +
                        json.dumps("__metadata__").encode(), 1)
    write_raw_header(path, text, data)


STRUCTURAL = {
    "empty-file": corrupt_empty,
    "length-truncated": corrupt_short_length,
    "header-length-past-eof": corrupt_length_past_eof,
    "header-length-2^64-1": corrupt_length_huge,
    "header-length-zero": corrupt_length_zero,
    "header-not-json": corrupt_header_not_json,
    "header-invalid-utf8": corrupt_header_invalid_utf8,
    "header-not-object": corrupt_header_not_object,
    "header-deep-nesting": corrupt_header_deep_nesting,
    "data-truncated": corrupt_truncated_data,
    "offsets-past-eof": corrupt_offsets_past_eof,
    "offsets-overlap": corrupt_offsets_overlap,
    "offsets-reversed": corrupt_offsets_reversed,
    "offsets-not-integers": corrupt_offsets_not_integers,
    "offsets-near-2^64": corrupt_offsets_huge,
    "dtype-unknown": corrupt_dtype_unknown,
    "shape-bytes-mismatch": corrupt_shape_bytes_mismatch,
    "shape-negative": corrupt_shape_negative,
    "shape-product-overflow": corrupt_shape_overflow,
    "shape-rank-10000": corrupt_shape_rank_huge,
    "duplicate-tensor-name": corrupt_duplicate_name,
}
