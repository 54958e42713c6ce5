"""Catalogue cases on the HF side: broken safetensors files, configs, indexes and file types, each run through
every command that reads an HF checkpoint (inspect, hf2mcore, forward, roundtrip, verify)."""
import json
import math
import os
import struct

import safetensors_gen as st
from catalogue import Case, Run

MODEL = "model.safetensors"


def _commands(ctx, hf, expect):
    """The Run of each HF-reading command on checkpoint `hf`; `expect` maps command -> exit codes."""
    mc = None
    runs = {}
    for cmd, codes in expect.items():
        if cmd == "inspect":
            runs[cmd] = Run(["inspect", hf], codes, inputs=[hf])
        elif cmd == "inspect-scan":
            runs[cmd] = Run(["inspect", "--scan", hf], codes, inputs=[hf])
        elif cmd == "hf2mcore":
            out = ctx.path("out")
            runs[cmd] = Run(["hf2mcore", "--hf", hf, "--out", out], codes, inputs=[hf], outputs=[out])
        elif cmd == "forward":
            runs[cmd] = Run(["forward", "--hf", hf, "--ids", "2,17,99,3"], codes, inputs=[hf])
        elif cmd == "roundtrip":
            runs[cmd] = Run(["roundtrip", "--hf", hf], codes, inputs=[hf])
        elif cmd == "verify":
            mc = mc or ctx.copy("mc")
            runs[cmd] = Run(["verify", "--hf", hf, "--mcore", mc], codes, inputs=[hf, mc])
        elif cmd == "mcore2hf-reference":
            mc = mc or ctx.copy("mc")
            out = ctx.path("out")
            runs[cmd] = Run(["mcore2hf", "--mcore", mc, "--reference-hf", hf, "--out", out], codes, inputs=[hf, mc],
                            outputs=[out])
        else:
            raise KeyError(cmd)
    return runs


def _name(cmd, prefix):
    return f"inspect/{prefix}--scan" if cmd == "inspect-scan" else f"{cmd}/{prefix}"


def product(prefix, prepare, expect, base="e4b"):
    """One case per command in `expect` on a copy of `base` broken by prepare(ctx, hf_dir)."""
    cases = []
    for cmd in expect:
        def build(ctx, cmd=cmd):
            hf = ctx.copy(base, "hf")
            prepare(ctx, hf)
            return _commands(ctx, hf, {cmd: expect[cmd]})[cmd]
        cases.append(Case(_name(cmd, prefix), build))
    return cases


ALL_ERR = {"hf2mcore": (2,), "forward": (2,), "roundtrip": (2,), "verify": (2,)}


# --- safetensors structure: inspect lists the problem (exit 1), everything else refuses (exit 2).

def structural_cases():
    cases = []
    for name, corrupt in st.STRUCTURAL.items():
        cases += product(f"safetensors-{name}", lambda ctx, hf, c=corrupt: c(hf / MODEL),
                         {"inspect": (1,), **ALL_ERR})
    return cases


# --- tensors that contradict the config.

def _drop(suffix):
    return lambda ctx, hf: st.rewrite(hf / MODEL, lambda es: [e for e in es if not e[0].endswith(suffix)])


def _add(name_suffix, dtype="BF16", shape=(64,)):
    def prepare(ctx, hf):
        def edit(es):
            anchor = next(e[0] for e in es if e[0].endswith("layers.0.input_layernorm.weight"))
            prefix = anchor[:-len("layers.0.input_layernorm.weight")]
            n = math.prod(shape) * st.DTYPE_SIZE[dtype]
            return es + [(prefix + name_suffix, dtype, list(shape), b"\x00" * n)]
        st.rewrite(hf / MODEL, edit)
    return prepare


def _reshape(suffix, shape_fn, dtype=None):
    def prepare(ctx, hf):
        def edit(es):
            out = []
            for name, dt, shape, blob in es:
                if name.endswith(suffix):
                    shape = shape_fn(shape)
                    dt = dtype or dt
                    want = math.prod(shape) * st.DTYPE_SIZE[dt]
                    blob = (blob * (want // max(1, len(blob)) + 1))[:want]
                out.append((name, dt, shape, blob))
            return out
        st.rewrite(hf / MODEL, edit)
    return prepare


def _set(suffix, value):
    return lambda ctx, hf: st.set_values(hf / MODEL, suffix, 3, value)


def tensor_cases():
    cases = []
    cases += product("missing-q-proj", _drop(st.Q), {"inspect": (1,), **ALL_ERR})
    cases += product("missing-embedding", _drop("embed_tokens.weight"), {"inspect": (1,), **ALL_ERR})
    cases += product("extra-tensor", _add("layers.0.self_attn.bogus.weight"),
                     {"inspect": (1,), "hf2mcore": (2,), "roundtrip": (2,)})
    cases += product("extra-layer", _add("layers.99.input_layernorm.weight"),
                     {"inspect": (1,), "hf2mcore": (2,), "roundtrip": (2,)})
    cases += product("q-proj-transposed", _reshape(st.Q, lambda s: s[::-1]), {"inspect": (1,), **ALL_ERR})
    cases += product("q-proj-zero-rows", _reshape(st.Q, lambda s: [0] + s[1:]), {"inspect": (1,), **ALL_ERR})
    cases += product("q-proj-rank-3", _reshape(st.Q, lambda s: [1] + s), {"inspect": (1,), **ALL_ERR})
    cases += product("q-proj-int16", _reshape(st.Q, lambda s: s, dtype="I16"),
                     {"inspect": (1,), "hf2mcore": (2,), "forward": (2,)})
    cases += product("experts-gate-up-wrong-shape",
                     _reshape("layers.0.experts.gate_up_proj", lambda s: [s[0], s[2], s[1]]),
                     {"inspect": (1,), **ALL_ERR}, base="moe")
    cases += product("router-missing", _drop("layers.1.router.proj.weight"),
                     {"inspect": (1,), "hf2mcore": (2,), "forward": (2,)}, base="moe")
    cases += product("weight-nan", _set(st.Q, math.nan),
                     {"inspect-scan": (1,), "hf2mcore": (2,), "roundtrip": (2,)})
    cases += product("weight-inf", _set("layers.1.mlp.down_proj.weight", math.inf),
                     {"inspect-scan": (1,), "hf2mcore": (2,)})
    cases += product("weight-nan-in-layer-scalar", _set_scalar_nan, {"inspect-scan": (1,), "hf2mcore": (2,)})

    def nan_allowed(ctx):
        hf = ctx.copy("e4b", "hf")
        st.set_values(hf / MODEL, st.Q, 3, math.nan)
        out = ctx.path("out")
        return Run(["hf2mcore", "--allow-non-finite", "--hf", hf, "--out", out], (0,), inputs=[hf], outputs=[out])
    cases.append(Case("hf2mcore/weight-nan-allowed-converts", nan_allowed))
    return cases


def _set_scalar_nan(ctx, hf):
    header, data = st.read(hf / MODEL)
    name = st.find(header, "layers.2.layer_scalar")
    e = header[name]
    data = bytearray(data)
    at = e["data_offsets"][0]
    data[at:at + 2] = struct.pack("<f", math.nan)[2:]
    st.write(hf / MODEL, header, bytes(data))


# --- config.json: unreadable or absurd. Every command refuses it (inspect too: nothing left to check).

def _text(cfg):
    return cfg.get("text_config") or cfg


def _config_edit(change):
    def prepare(ctx, hf):
        cfg = json.loads((hf / "config.json").read_text())
        change(cfg, _text(cfg))
        (hf / "config.json").write_text(json.dumps(cfg))
    return prepare


def _config_bytes(data):
    def prepare(ctx, hf):
        (hf / "config.json").write_bytes(data() if callable(data) else data)
    return prepare


def _setkey(key, value):
    return _config_edit(lambda cfg, text: text.__setitem__(key, value))


CONFIGS = {
    "config-missing": lambda ctx, hf: os.remove(hf / "config.json"),
    "config-empty": _config_bytes(b""),
    "config-garbage": _config_bytes(b"\x00\x01garbage{{{"),
    "config-truncated": lambda ctx, hf: (hf / "config.json").write_bytes((hf / "config.json").read_bytes()[:200]),
    "config-not-object": _config_bytes(b"[1, 2, 3]"),
    "config-invalid-utf8": _config_bytes(b'{"model_type": "gemma4\xff\xfe"}'),
    "config-nan-literal": lambda ctx, hf: (hf / "config.json").write_bytes(
        (hf / "config.json").read_bytes().replace(b'"rms_norm_eps": 1e-06', b'"rms_norm_eps": NaN')),
    "config-deep-arrays-100000": _config_bytes(b"[" * 100_000 + b"]" * 100_000),
    "config-deep-objects-100000": _config_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    "config-deep-value-in-text-config": _config_edit(
        lambda cfg, text: text.__setitem__("layer_types", json.loads("[" * 500 + "]" * 500))),
    "config-layers-1e9": _setkey("num_hidden_layers", 1_000_000_000),
    "config-layers-float": _setkey("num_hidden_layers", 6.5),
    "config-layers-zero": _setkey("num_hidden_layers", 0),
    "config-layers-negative": _setkey("num_hidden_layers", -6),
    "config-layers-string": _setkey("num_hidden_layers", "6"),
    "config-layers-2^64": _setkey("num_hidden_layers", 2**64),
    "config-hidden-zero": _setkey("hidden_size", 0),
    "config-hidden-negative": _setkey("hidden_size", -64),
    "config-hidden-2^62": _setkey("hidden_size", 2**62),
    "config-hidden-1e400": lambda ctx, hf: (hf / "config.json").write_bytes(
        (hf / "config.json").read_bytes().replace(b'"hidden_size": 64', b'"hidden_size": 1e400')),
    "config-vocab-zero": _setkey("vocab_size", 0),
    "config-vocab-2^40": _setkey("vocab_size", 2**40),
    "config-heads-zero": _setkey("num_attention_heads", 0),
    "config-kv-heads-not-divisor": _setkey("num_key_value_heads", 3),
    "config-head-dim-zero": _setkey("head_dim", 0),
    "config-intermediate-negative": _setkey("intermediate_size", -1),
    "config-layer-types-short": _config_edit(lambda cfg, text: text.__setitem__("layer_types", text["layer_types"][:-1])),
    "config-layer-types-unknown": _config_edit(
        lambda cfg, text: text.__setitem__("layer_types", ["banana"] * len(text["layer_types"]))),
    "config-kv-shared-exceeds-layers": _setkey("num_kv_shared_layers", 100),
    "config-sliding-window-negative": _setkey("sliding_window", -4),
    "config-text-config-null": _config_edit(lambda cfg, text: cfg.__setitem__("text_config", None)),
    "config-model-type-llama": _config_edit(lambda cfg, text: (cfg.__setitem__("model_type", "llama"),
                                                               text.__setitem__("model_type", "llama"))),
    "config-per-layer-config-layer-99": _config_edit(
        lambda cfg, text: text.__setitem__("per_layer_config", {"99": {"head_dim": 64}})),
    "config-huge-file": lambda ctx, hf: _huge_config(hf),
}


def _huge_config(hf):
    """A 300 MB config.json (sparse, so cheap to make): more than any config can be; read_text_file's cap."""
    with open(hf / "config.json", "r+b") as f:
        f.truncate(300 << 20)


def config_cases():
    cases = []
    few = {"roundtrip", "verify"}
    for name, prepare in CONFIGS.items():
        # Well-typed but absurd sizes may also be inspected as a config every tensor contradicts.
        lenient = name in ("config-hidden-2^62", "config-vocab-2^40", "config-text-config-null")
        expect = {"inspect": (1, 2) if lenient else (2,), "hf2mcore": (2,), "forward": (2,)}
        if name in ("config-missing", "config-garbage", "config-deep-arrays-100000", "config-layers-1e9",
                    "config-hidden-zero", "config-hidden-negative"):
            expect.update({c: (2,) for c in few})
        cases += product(name, prepare, expect)
    # The released flat form (synth's causal checkpoint) takes the same path through a different reader branch.
    cases += product("config-flat-layers-1e9", _setkey("num_hidden_layers", 1_000_000_000),
                     {"inspect": (2,), "hf2mcore": (2,), "forward": (2,)}, base="sharded")
    cases += product("config-untied-without-lm-head", _setkey("tie_word_embeddings", False),
                     {"inspect": (1,), "hf2mcore": (2,), "forward": (2,)})
    return cases


# --- sharded checkpoints: the index and its shards.

def _index_edit(change):
    def prepare(ctx, hf):
        idx = json.loads((hf / "model.safetensors.index.json").read_text())
        change(idx, hf)
        (hf / "model.safetensors.index.json").write_text(json.dumps(idx))
    return prepare


def _first_shard(hf):
    return sorted(p for p in os.listdir(hf) if p.endswith(".safetensors"))[0]


def _index_points_at_missing(idx, hf):
    k = next(iter(idx["weight_map"]))
    idx["weight_map"][k] = "model-00009-of-00009.safetensors"


def _index_traversal(idx, hf):
    k = next(iter(idx["weight_map"]))
    idx["weight_map"][k] = "../../../../../../etc/passwd"


def _index_absolute(idx, hf):
    k = next(iter(idx["weight_map"]))
    idx["weight_map"][k] = "/etc/passwd"


def _index_wrong_shard(idx, hf):
    shards = sorted(set(idx["weight_map"].values()))
    k = next(k for k, v in idx["weight_map"].items() if v == shards[0])
    idx["weight_map"][k] = shards[1]


def _index_drops_tensor(idx, hf):
    idx["weight_map"].pop(next(iter(idx["weight_map"])))


def _shard_duplicate(ctx, hf):
    """Shard 2 also holds a tensor of shard 1 (two shards claim one name)."""
    shards = sorted(p for p in os.listdir(hf) if p.endswith(".safetensors"))
    h1, d1 = st.read(hf / shards[0])
    name, dtype, shape, blob = st.tensors(h1, d1)[0]
    st.rewrite(hf / shards[1], lambda es: es + [(name, dtype, shape, blob)])


INDEXES = {
    "index-missing-shard": (lambda ctx, hf: os.remove(hf / _first_shard(hf)), 1),
    "index-points-at-absent-file": (_index_edit(_index_points_at_missing), 1),
    "index-path-traversal": (_index_edit(_index_traversal), 1),
    "index-absolute-path": (_index_edit(_index_absolute), 1),
    "index-names-wrong-shard": (_index_edit(_index_wrong_shard), 1),
    "index-omits-tensor": (_index_edit(_index_drops_tensor), 1),
    "index-garbage": (lambda ctx, hf: (hf / "model.safetensors.index.json").write_bytes(b"{\x00garbage"), 2),
    "index-not-object": (lambda ctx, hf: (hf / "model.safetensors.index.json").write_text("[]"), 2),
    "index-weight-map-not-object": (_index_edit(lambda idx, hf: idx.__setitem__("weight_map", [1, 2])), 2),
    "index-deep-nesting": (lambda ctx, hf: (hf / "model.safetensors.index.json").write_bytes(
        b'{"weight_map": {}, "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 2),
    "shard-duplicates-tensor": (_shard_duplicate, 1),
    "shard-fifo": (lambda ctx, hf: _replace_with_fifo(hf / _first_shard(hf)), 1),
}


def index_cases():
    cases = []
    for name, (prepare, inspect_rc) in INDEXES.items():
        cases += product(name, prepare, {"inspect": (inspect_rc,), "hf2mcore": (2,), "forward": (2,)}, base="sharded")
    return cases


# --- file types: FIFOs, directories, loops and devices where files should be.

def _replace_with_fifo(p):
    os.remove(p)
    os.mkfifo(p)


def _replace_with_dir(p):
    os.remove(p)
    os.mkdir(p)


def _replace_with_loop(p):
    os.remove(p)
    os.symlink(p.name + ".loop", p)
    os.symlink(p.name, p.parent / (p.name + ".loop"))


def _replace_with_link(target):
    def f(p):
        os.remove(p)
        os.symlink(target, p)
    return f


FILE_KINDS = {
    "fifo": _replace_with_fifo,
    "directory": _replace_with_dir,
    "symlink-loop": _replace_with_loop,
    "dangling-symlink": _replace_with_link("does-not-exist"),
    "dev-zero": _replace_with_link("/dev/zero"),
    "dev-null": _replace_with_link("/dev/null"),
}


def filetype_cases():
    cases = []
    for kind, make in FILE_KINDS.items():
        cases += product(f"model-file-{kind}", lambda ctx, hf, m=make: m(hf / MODEL),
                         {"inspect": (1, 2), "hf2mcore": (2,), "forward": (2,), "roundtrip": (2,)})
        cases += product(f"config-{kind}", lambda ctx, hf, m=make: m(hf / "config.json"),
                         {"inspect": (2,), "hf2mcore": (2,), "forward": (2,)})

    def hf_arg(kind):
        def build(ctx, cmd):
            p = ctx.path("hf")
            if kind == "missing":
                pass
            elif kind == "file":
                p.write_bytes(b"not a directory")
            elif kind == "fifo":
                os.mkfifo(p)
            elif kind == "loop":
                os.symlink("hf2", p)
                os.symlink("hf", ctx.path("hf2"))
            elif kind == "empty-dir":
                p.mkdir()
            return _commands(ctx, p, {cmd: (2,)})[cmd]
        return build
    for kind in ("missing", "file", "fifo", "loop", "empty-dir"):
        for cmd in ("inspect", "hf2mcore", "forward"):
            cases.append(Case(f"{cmd}/hf-dir-{kind}", lambda ctx, k=kind, c=cmd: hf_arg(k)(ctx, c)))

    # A model file symlinked from elsewhere (a hub cache's snapshot) is legal: inspect reads through it.
    def hub_link(ctx):
        hf = ctx.copy("e4b", "hf")
        blobs = ctx.path("blobs")
        blobs.mkdir()
        os.rename(hf / MODEL, blobs / "abc123")
        os.symlink(blobs / "abc123", hf / MODEL)
        return Run(["inspect", hf], (0,), inputs=[hf, blobs])
    cases.append(Case("inspect/model-file-hub-symlink-is-fine", hub_link))
    return cases


def cases():
    return structural_cases() + tensor_cases() + config_cases() + index_cases() + filetype_cases()
