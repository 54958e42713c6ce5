"""Catalogue cases on the Megatron side: hostile and malformed `.metadata` pickles, broken `.distcp` files and the
torch.save blobs inside them, chunk tables that do not tile their tensors, trackers, hf_config.json, and
checkpoints of another model, each run through every command that reads a torch_dist checkpoint (mcore2hf,
inspect, forward --mcore, verify)."""
import io
import json
import os
import shutil
import zipfile

import pickle_gen as pk
from catalogue import Case, Run
from cases_hf import FILE_KINDS

ITER = "iter_0000000"
EMB = "language_model.embedding.word_embeddings.weight"
NORM = "language_model.decoder.layers.input_layernorm.weight"  # stacked [6, 64]: one chunk per layer


def no_pwned(case_dir, proc):
    return "a pickle executed code (pwned exists)" if (case_dir / "pwned").exists() else None


def _commands(ctx, mc, expect, hf=None):
    runs = {}
    for cmd, codes in expect.items():
        if cmd == "mcore2hf":
            out = ctx.path("out")
            runs[cmd] = Run(["mcore2hf", "--mcore", mc, "--out", out], codes, inputs=[mc], outputs=[out])
        elif cmd == "inspect":
            runs[cmd] = Run(["inspect", mc], codes, inputs=[mc])
        elif cmd == "inspect-scan":
            runs[cmd] = Run(["inspect", "--scan", mc], codes, inputs=[mc])
        elif cmd == "forward":
            runs[cmd] = Run(["forward", "--mcore", mc, "--ids", "2,17,99,3"], codes, inputs=[mc])
        elif cmd == "verify":
            hf = hf or ctx.copy("e4b", "hf")
            runs[cmd] = Run(["verify", "--hf", hf, "--mcore", mc], codes, inputs=[mc, hf])
        else:
            raise KeyError(cmd)
        runs[cmd].check = no_pwned
    return runs


def _name(cmd, prefix):
    return f"inspect/{prefix}--scan" if cmd == "inspect-scan" else f"{cmd}/{prefix}"


def product(prefix, prepare, expect, base="mc"):
    cases = []
    for cmd in expect:
        def build(ctx, cmd=cmd):
            mc = ctx.copy(base, "mc")
            prepare(ctx, mc)
            return _commands(ctx, mc, {cmd: expect[cmd]})[cmd]
        cases.append(Case(_name(cmd, prefix), build))
    return cases


ALL = {"mcore2hf": (2,), "inspect": (2,), "forward": (2,), "verify": (2,)}
# Chunk-table and content problems: inspect lists them (exit 1), readers refuse.
LISTED = {"mcore2hf": (2,), "inspect-scan": (1,), "forward": (2,), "verify": (2,)}
# Numbers a torch.Size cannot hold (negative): a malformed .metadata that inspect may refuse outright.
MALFORMED = {"mcore2hf": (2,), "inspect-scan": (1, 2), "forward": (2,), "verify": (2,)}
# A data file that cannot be opened at all: inspect may list it or refuse the checkpoint; readers refuse.
UNOPENABLE = {"mcore2hf": (2,), "inspect-scan": (1, 2), "forward": (2,), "verify": (2,)}


def _meta(mc):
    return mc / ITER / ".metadata"


# --- .metadata replaced by hostile or malformed pickles.

def metadata_pickle_cases():
    cases = []
    for name, blob in pk.HOSTILE.items():
        expect = dict(ALL) if name.startswith(("global", "self", "dag", "nesting")) else {"mcore2hf": (2,), "inspect": (2,)}
        cases += product(f"metadata-{name}", lambda ctx, mc, b=blob: _meta(mc).write_bytes(b), expect)

    def version_calls_os_system(ctx, mc):
        """A real Metadata whose 'version' value is os.system(...) (the call sits deep inside valid state)."""
        raw = _meta(mc).read_bytes()
        old = b"X\x05\x00\x00\x001.0.0"
        assert raw.count(old) == 1
        _meta(mc).write_bytes(raw.replace(old, pk.call("os", "system", pk.PWN)))
    cases += product("metadata-os-system-inside-valid-state", version_calls_os_system, ALL)

    def truncated(ctx, mc):
        raw = _meta(mc).read_bytes()
        _meta(mc).write_bytes(raw[:len(raw) // 2])
    cases += product("metadata-truncated", truncated, ALL)
    cases += product("metadata-garbage", lambda ctx, mc: _meta(mc).write_bytes(os.urandom(4096)), ALL)
    cases += product("metadata-not-a-metadata-object", lambda ctx, mc: _meta(mc).write_bytes(pk.wrap(b"K\x05")), ALL)
    for kind, make in FILE_KINDS.items():
        cases += product(f"metadata-{kind}", lambda ctx, mc, m=make: m(_meta(mc)), {"mcore2hf": (2,), "inspect": (2,),
                                                                                       "forward": (2,)})
    return cases


# --- .metadata edited: chunks, storage records, tensor entries.

def _edit(change):
    def prepare(ctx, mc):
        m = pk.Metadata(_meta(mc))
        change(m, mc)
        m.save(_meta(mc))
    return prepare


def _chunk(m, fqn, i):
    return m.chunks(fqn)[i]


def _set_chunk(fqn, i, offsets=None, sizes=None):
    def change(m, mc):
        c = _chunk(m, fqn, i)
        info = m.storage_of(fqn, i)
        if offsets is not None:
            for index in m.storage:
                if m.storage[index] is info:
                    index["offset"] = pk.size(*offsets)
            c["offsets"] = pk.size(*offsets)
        if sizes is not None:
            c["sizes"] = pk.size(*sizes)
    return change


def _drop_chunk(fqn, i):
    def change(m, mc):
        info = m.storage_of(fqn, i)
        del m.chunks(fqn)[i]
        for index in [k for k, v in m.storage.items() if v is info]:
            del m.storage[index]
    return change


def _storage(fqn, **fields):
    def change(m, mc):
        info = m.storage_of(fqn, 0)
        for k, v in fields.items():
            info[k] = v(mc, info) if callable(v) else v
    return change


def _distcp_size(mc, info):
    return os.path.getsize(mc / ITER / info["relative_path"])


def _drop_tensor(fqn):
    def change(m, mc):
        del m.tensors[fqn]
        for index in [k for k in m.storage if k["fqn"] == fqn]:
            del m.storage[index]
    return change


def _tensor_size(fqn, dims):
    return lambda m, mc: m.set_tensor_size(fqn, dims)


def _dtype(fqn, name):
    def change(m, mc):
        props = m.tensors[fqn]["properties"]
        state = list(props._state)
        state[0] = pk._stub_class("torch", name)
        props._state = tuple(state)
    return change


def _add_zero_d_training_state(m, mc):
    """A 0-d optimizer tensor (an Adam step count): legal, never read by the converters."""
    dcp = "torch.distributed.checkpoint.metadata"
    fqn = "optimizer.state.step"
    chunk = pk.new(dcp, "ChunkStorageMetadata", {"offsets": pk.size(), "sizes": pk.size()})
    m.tensors[fqn] = pk.new(dcp, "TensorStorageMetadata",
                            {"properties": m.tensors[NORM]["properties"], "size": pk.size(), "chunks": [chunk]})
    m.storage[pk.new(dcp, "MetadataIndex", {"fqn": fqn, "offset": pk.size(), "index": None})] = m.storage_of(NORM, 0)


def _zero_d_mapped(m, mc):
    """A mapped weight stored as a 0-d tensor (shape [] instead of [6, 64]), its one chunk 0-d too."""
    info = m.storage_of(NORM, 0)
    for i in range(len(m.chunks(NORM)) - 1, 0, -1):
        _drop_chunk(NORM, i)(m, mc)
    m.set_tensor_size(NORM, ())
    c = m.chunks(NORM)[0]
    c["offsets"] = pk.size()
    c["sizes"] = pk.size()
    for index in [k for k, v in m.storage.items() if v is info]:
        index["offset"] = pk.size()


EDITS = {
    "chunk-overlap": (_set_chunk(NORM, 1, offsets=(0, 0)), LISTED),
    "chunk-grown-into-neighbour": (_set_chunk(NORM, 0, sizes=(2, 64)), LISTED),
    "chunk-outside-tensor": (_set_chunk(NORM, 1, offsets=(6, 0)), LISTED),
    "chunk-negative-offset": (_set_chunk(NORM, 1, offsets=(-1, 0)), MALFORMED),
    "chunk-rank-mismatch": (_set_chunk(NORM, 1, offsets=(1,), sizes=(1,)), LISTED),
    "chunk-hole": (_drop_chunk(NORM, 2), LISTED),
    "chunk-all-removed": (lambda m, mc: m.chunks(EMB).clear(), LISTED),
    "storage-offset-past-eof": (_storage(EMB, offset=lambda mc, i: _distcp_size(mc, i) + 100), LISTED),
    "storage-length-past-eof": (_storage(EMB, length=10**12), LISTED),
    "storage-offset-2^62": (_storage(EMB, offset=2**62), LISTED),
    "storage-length-zero": (_storage(EMB, length=0), LISTED),
    "storage-path-traversal": (_storage(EMB, relative_path="../../../../../../etc/passwd"), UNOPENABLE),
    "storage-path-absolute": (_storage(EMB, relative_path="/etc/passwd"), UNOPENABLE),
    "storage-path-missing-file": (_storage(EMB, relative_path="__9_9.distcp"), UNOPENABLE),
    "storage-path-directory": (_storage(EMB, relative_path="."), UNOPENABLE),
    "storage-record-missing": (lambda m, mc: [m.storage.pop(k) for k in [k for k in m.storage if k["fqn"] == EMB]],
                               LISTED),
    "tensor-missing": (_drop_tensor(EMB), {"mcore2hf": (2,), "inspect": (1,), "forward": (2,), "verify": (2,)}),
    "tensor-size-negative": (_tensor_size(EMB, (-128, 64)), MALFORMED),
    "tensor-size-overflow": (_tensor_size(EMB, (2**62, 2**62)), LISTED),
    "tensor-size-disagrees-with-chunks": (_tensor_size(EMB, (256, 64)), LISTED),
    "tensor-zero-d-mapped-weight": (_zero_d_mapped, LISTED),
    "tensor-dtype-unknown": (_dtype(EMB, "banana"), {"mcore2hf": (2,), "inspect": (1, 2), "forward": (2,)}),
    "tensor-dtype-disagrees-with-blob": (_dtype(EMB, "float32"), LISTED),
    "state-dict-metadata-not-dict": (lambda m, mc: m.root._state.__setitem__("state_dict_metadata", [1, 2]),
                                     {"mcore2hf": (2,), "inspect": (2,), "forward": (2,)}),
    "storage-data-missing": (lambda m, mc: m.root._state.pop("storage_data"),
                             {"mcore2hf": (2,), "inspect": (2,), "forward": (2,)}),
}


def metadata_edit_cases():
    cases = []
    for name, (change, expect) in EDITS.items():
        cases += product(f"metadata-{name}", _edit(change), expect)
    # Legal oddities: must convert (and inspect clean).
    for cmd, codes in (("mcore2hf", (0,)), ("inspect", (0,)), ("forward", (0,))):
        def build(ctx, cmd=cmd, codes=codes):
            mc = ctx.copy("mc", "mc")
            _edit(_add_zero_d_training_state)(ctx, mc)
            return _commands(ctx, mc, {cmd: codes})[cmd]
        cases.append(Case(f"{cmd}/metadata-zero-d-training-state-is-fine", build))
    return cases


# --- .distcp files and the torch.save blobs inside them.

def _distcp_of(mc, fqn=EMB):
    m = pk.Metadata(_meta(mc))
    info = m.storage_of(fqn, 0)
    return mc / ITER / info["relative_path"], info["offset"], info["length"]


def _blob_member(mc, suffix, payload_fn):
    """Overwrites, in place and at the same length, the `suffix` member of the embedding's torch.save blob."""
    path, offset, length = _distcp_of(mc)
    raw = bytearray(path.read_bytes())
    blob = bytes(raw[offset:offset + length])
    z = zipfile.ZipFile(io.BytesIO(blob))
    info = next(i for i in z.infolist() if i.filename.endswith(suffix))
    local = blob[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    payload = payload_fn(info.compress_size)
    assert len(payload) <= info.compress_size, (suffix, len(payload), info.compress_size)
    payload = payload + b"\x00" * (info.compress_size - len(payload))
    raw[offset + start:offset + start + len(payload)] = payload
    path.write_bytes(bytes(raw))


def _blob_pickle(name):
    return lambda ctx, mc: _blob_member(mc, "data.pkl", lambda n: pk.HOSTILE[name])


def _truncate_distcp(ctx, mc):
    path, _, _ = _distcp_of(mc)
    path.write_bytes(path.read_bytes()[:os.path.getsize(path) // 2])


def _garbage_distcp(ctx, mc):
    path, _, _ = _distcp_of(mc)
    path.write_bytes(os.urandom(os.path.getsize(path)))


def _blob_eocd_garbage(ctx, mc):
    """The blob's zip end-of-central-directory record overwritten (its entries cannot be found)."""
    path, offset, length = _distcp_of(mc)
    raw = bytearray(path.read_bytes())
    raw[offset + length - 22:offset + length] = b"\xee" * 22
    path.write_bytes(bytes(raw))


def _blob_storage_key_garbage(ctx, mc):
    """data.pkl's storage key points at a member that does not exist."""
    def payload(n):
        path, offset, length = _distcp_of(mc)
        blob = path.read_bytes()[offset:offset + length]
        z = zipfile.ZipFile(io.BytesIO(blob))
        pkl = z.read(next(i for i in z.infolist() if i.filename.endswith("data.pkl")))
        return pkl.replace(b"X\x01\x00\x00\x000", b"X\x01\x00\x00\x009", 1)
    _blob_member(mc, "data.pkl", payload)


DISTCP = {
    "distcp-truncated": (_truncate_distcp, LISTED),
    "distcp-garbage": (_garbage_distcp, LISTED),
    "distcp-empty": (lambda ctx, mc: _distcp_of(mc)[0].write_bytes(b""), LISTED),
    "distcp-missing": (lambda ctx, mc: os.remove(_distcp_of(mc)[0]), UNOPENABLE),
    "distcp-blob-os-system": (_blob_pickle("global-os-system"), LISTED),
    "distcp-blob-stack-global-os-system": (_blob_pickle("stack-global-os-system"), LISTED),
    "distcp-blob-builtins-eval": (_blob_pickle("global-builtins-eval"), LISTED),
    "distcp-blob-self-referencing-list": (_blob_pickle("self-referencing-list"), LISTED),
    "distcp-blob-memo-get-undefined": (_blob_pickle("memo-get-undefined"), LISTED),
    "distcp-blob-zip-directory-garbage": (_blob_eocd_garbage, LISTED),
    "distcp-blob-storage-key-unknown": (_blob_storage_key_garbage, LISTED),
}


def distcp_cases():
    cases = []
    for name, (prepare, expect) in DISTCP.items():
        cases += product(name, prepare, expect)
    for kind, make in FILE_KINDS.items():
        cases += product(f"distcp-{kind}", lambda ctx, mc, m=make: m(_distcp_of(mc)[0]),
                         {"mcore2hf": (2,), "inspect-scan": (1, 2), "forward": (2,)})
    return cases


# --- the tracker and the iteration directory.

TRACKER = "latest_checkpointed_iteration.txt"


def _tracker(text):
    return lambda ctx, mc: (mc / TRACKER).write_bytes(text)


def _no_tracker_no_iter(ctx, mc):
    os.remove(mc / TRACKER)
    os.rename(mc / ITER, mc / "checkpoint")


TRACKERS = {
    "tracker-points-nowhere": _tracker(b"7\n"),
    "tracker-garbage": _tracker(b"\x00\xffseven"),
    "tracker-empty": _tracker(b""),
    "tracker-negative": _tracker(b"-1"),
    "tracker-huge-number": _tracker(b"99999999999999999999999"),
    "tracker-path-traversal": _tracker(b"../../../../etc"),
    "tracker-release-without-release-dir": _tracker(b"release"),
    "tracker-long-file": _tracker(b"0" * 10_000_000),
    "tracker-directory": lambda ctx, mc: (os.remove(mc / TRACKER), os.mkdir(mc / TRACKER)),
    "tracker-fifo": lambda ctx, mc: FILE_KINDS["fifo"](mc / TRACKER),
    "tracker-dev-zero": lambda ctx, mc: FILE_KINDS["dev-zero"](mc / TRACKER),
    "tracker-symlink-loop": lambda ctx, mc: FILE_KINDS["symlink-loop"](mc / TRACKER),
    "no-tracker-no-iteration-dir": _no_tracker_no_iter,
    "iteration-dir-without-metadata": lambda ctx, mc: os.remove(_meta(mc)),
    "iteration-dir-is-a-file": lambda ctx, mc: (shutil.rmtree(mc / ITER), (mc / ITER).write_bytes(b"x")),
}


def tracker_cases():
    cases = []
    for name, prepare in TRACKERS.items():
        cases += product(name, prepare, {"mcore2hf": (2,), "inspect": (2,), "forward": (2,)})
    # A missing tracker is legal: the highest iter_* directory is used.
    for cmd, codes in (("mcore2hf", (0,)), ("inspect", (0,))):
        def build(ctx, cmd=cmd, codes=codes):
            mc = ctx.copy("mc", "mc")
            os.remove(mc / TRACKER)
            return _commands(ctx, mc, {cmd: codes})[cmd]
        cases.append(Case(f"{cmd}/tracker-missing-falls-back-to-iter-dir", build))

    def mcore_arg(kind, cmd):
        def build(ctx):
            p = ctx.path("mc")
            if kind == "file":
                p.write_bytes(b"not a checkpoint")
            elif kind == "fifo":
                os.mkfifo(p)
            elif kind == "loop":
                os.symlink("mc2", p)
                os.symlink("mc", ctx.path("mc2"))
            elif kind == "empty-dir":
                p.mkdir()
            return _commands(ctx, p, {cmd: (2,)})[cmd]
        return build
    for kind in ("missing", "file", "fifo", "loop", "empty-dir"):
        for cmd in ("mcore2hf", "inspect", "forward"):
            cases.append(Case(f"{cmd}/mcore-dir-{kind}", mcore_arg(kind, cmd)))
    return cases


# --- hf_config.json: missing, unreadable, or disagreeing with the stored tensors.

def _hf_config(change):
    def prepare(ctx, mc):
        p = mc / ITER / "hf_config.json"
        cfg = json.loads(p.read_text())
        text = cfg.get("text_config") or cfg
        change(cfg, text)
        p.write_text(json.dumps(cfg))
    return prepare


def _fewer_layers(cfg, text):
    """A consistent 5-layer config over the 6-layer stack (the last layer full, as every Gemma 4 ends)."""
    text["num_hidden_layers"] = 5
    text["layer_types"] = text["layer_types"][:4] + ["full_attention"]
    text["per_layer_config"] = {str(i): {"head_dim": 64} for i, t in enumerate(text["layer_types"]) if t == "full_attention"}


HF_CONFIGS = {
    "hf-config-garbage": (lambda ctx, mc: (mc / ITER / "hf_config.json").write_bytes(b"\x00garbage"), ALL),
    "hf-config-deep-nesting": (lambda ctx, mc: (mc / ITER / "hf_config.json").write_bytes(
        b"[" * 100_000 + b"]" * 100_000), ALL),
    "hf-config-layers-1e9": (_hf_config(lambda c, t: t.__setitem__("num_hidden_layers", 10**9)), ALL),
    "hf-config-fewer-layers-than-stack": (_hf_config(_fewer_layers), LISTED),
    "hf-config-hidden-disagrees-with-stack": (_hf_config(lambda c, t: t.__setitem__("hidden_size", 128)), LISTED),
    "hf-config-heads-disagree-with-qkv": (_hf_config(lambda c, t: t.__setitem__("num_attention_heads", 8)), LISTED),
    "hf-config-vocab-larger-than-embedding": (_hf_config(lambda c, t: t.__setitem__("vocab_size", 256)), LISTED),
    "hf-config-fifo": (lambda ctx, mc: FILE_KINDS["fifo"](mc / ITER / "hf_config.json"),
                       {"mcore2hf": (2,), "inspect": (2,), "forward": (2,)}),
    # Megatron-Bridge writes no hf_config.json: the config comes from run_config.yaml (run_config_cases: broken ones).
    "hf-config-missing": (lambda ctx, mc: os.remove(mc / ITER / "hf_config.json"),
                          {"mcore2hf": (0,), "inspect": (0,), "forward": (0,), "verify": (0,)}),
}


def hf_config_cases():
    cases = []
    for name, (prepare, expect) in HF_CONFIGS.items():
        cases += product(name, prepare, expect)
    # The MoE stack against a config whose expert count disagrees.
    cases += product("hf-config-experts-disagree-with-stack",
                     _hf_config(lambda c, t: t.__setitem__("num_experts", t["num_experts"] * 2)),
                     {"mcore2hf": (2,), "inspect-scan": (1,), "forward": (2,)}, base="mc-moe")
    return cases


# --- run_config.yaml (issue 10): with no hf_config.json (as Megatron-Bridge writes none) the HF config is rebuilt
# from it; a broken one is a one-line error naming the file, as a broken hf_config.json is.

def _no_hf_config(change):
    def prepare(ctx, mc):
        os.remove(mc / ITER / "hf_config.json")
        change(mc / ITER / "run_config.yaml")
    return prepare


def _alias_bomb():
    text = "model: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, c in enumerate("bcdefghij"):
        text += f"{c}: &{c} [" + ", ".join(["*" + ("a" if i == 0 else "bcdefghij"[i - 1])] * 10) + "]\n"
    return text.encode()


RUN_CONFIG_BROKEN = {"mcore2hf": (2,), "inspect": (2,), "forward": (2,), "verify": (2,)}
RUN_CONFIGS = {
    "run-config-truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3] + b"\n  window_size: [3,"),
    "run-config-binary": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "run-config-deep-nesting": lambda p: p.write_bytes(b"model: " + b"[" * 100_000 + b"]" * 100_000),
    "run-config-alias-bomb": lambda p: p.write_bytes(_alias_bomb()),
    "run-config-huge": lambda p: p.write_bytes(b"# " + b"x" * (20 << 20) + b"\n"),
    "run-config-fifo": lambda p: FILE_KINDS["fifo"](p),
    "run-config-python-object-tag": lambda p: p.write_text("model: !!python/object/apply:os.system ['touch pwned']\n"),
    "run-config-other-provider": lambda p: p.write_text(p.read_text().replace(".Gemma4DenseVLProvider\n",
                                                                               ".LlamaModelProvider\n")),
}


def run_config_cases():
    cases = []
    for name, change in RUN_CONFIGS.items():
        cases += product(name, _no_hf_config(change), RUN_CONFIG_BROKEN)
    # A config that parses but disagrees with the stored shapes: inspect lists the shapes, readers refuse.
    cases += product("run-config-hidden-disagrees-with-stack", _no_hf_config(lambda p: p.write_text(
        p.read_text().replace("\n  hidden_size: 64\n", "\n  hidden_size: 128\n"))),
        {"mcore2hf": (2,), "inspect": (1,), "forward": (2,), "verify": (2,)})
    # Neither file: nothing describes the model.
    cases += product("hf-config-and-run-config-missing",
                     _no_hf_config(lambda p: os.remove(p)), {"mcore2hf": (2,), "inspect": (1,), "forward": (2,), "verify": (2,)})
    return cases


# --- verify given two checkpoints that are not the same model.

def verify_structure_cases():
    def pair(hf_base, mc_base, config=None):
        def build(ctx):
            hf = ctx.copy(hf_base, "hf")
            mc = ctx.copy(mc_base, "mc")
            args = ["verify", "--hf", hf, "--mcore", mc]
            inputs = [hf, mc]
            if config:
                cfg = ctx.copy(config, "cfg") / "config.json"
                os.remove(mc / ITER / "hf_config.json")
                args += ["--config", cfg]
                inputs.append(cfg.parent)
            return Run(args, (2,), inputs=inputs)
        return build
    return [
        Case("verify/moe-hf-against-dense-mcore", pair("moe", "mc")),
        Case("verify/dense-hf-against-moe-mcore", pair("e4b", "mc-moe")),
        Case("verify/e2b-hf-against-e4b-mcore", pair("e2b", "mc")),
        Case("verify/config-of-another-model", pair("e4b", "mc", config="moe")),
    ]


# --- Megatron-Bridge's vocabulary padding and text mode (issue 10).

def _causal_hf_config(ctx, mc):
    """The conditional hf_config.json replaced by its text config as a Gemma4ForCausalLM config."""
    p = mc / ITER / "hf_config.json"
    text = json.loads(p.read_text())["text_config"]
    text["architectures"] = ["Gemma4ForCausalLM"]
    text["model_type"] = "gemma4_text"
    p.write_text(json.dumps(text))


PADDING_AND_TEXT_MODE = {
    # A config vocabulary smaller than the stored embedding: the rows beyond read as padding, and they are not
    # zero: mcore2hf exports the vocabulary's rows with a warning, inspect lists it, the forward refuses.
    "hf-config-vocab-smaller-than-embedding": (_hf_config(lambda c, t: t.__setitem__("vocab_size", 64)), "mc",
                                               {"mcore2hf": (0,), "inspect": (1,), "forward": (2,)}),
    # A text-mode checkpoint whose conditional config declares the audio tower, which nobody has.
    "text-mode-towers-nowhere": (lambda ctx, mc: None, "mc-text", {"mcore2hf": (2,), "inspect": (0,), "forward": (0,)}),
    # A text-mode checkpoint read with the causal config: a plain causal model.
    "text-mode-causal-config": (_causal_hf_config, "mc-text", {"mcore2hf": (0,), "inspect": (0,), "forward": (0,)}),
    # A VL checkpoint with a causal config: its language model exported as the causal form (a warning names the
    # dropped towers); inspect lists the tower keys the causal mapping does not have.
    "vl-checkpoint-causal-config": (_causal_hf_config, "mc", {"mcore2hf": (0,), "inspect": (1,), "forward": (0,)}),
}


def padding_and_text_mode_cases():
    cases = []
    for name, (prepare, base, expect) in PADDING_AND_TEXT_MODE.items():
        cases += product(name, prepare, expect, base=base)

    def text_mode_with_reference(ctx):
        mc, hf, out = ctx.copy("mc-text", "mc"), ctx.copy("e4b", "hf"), ctx.path("out")
        return Run(["mcore2hf", "--mcore", mc, "--out", out, "--reference-hf", hf], (0,), inputs=[mc, hf], outputs=[out])
    cases.append(Case("mcore2hf/text-mode-towers-from-reference", text_mode_with_reference))
    return cases


def cases():
    return (metadata_pickle_cases() + metadata_edit_cases() + distcp_cases() + tracker_cases() + hf_config_cases() +
            run_config_cases() + verify_structure_cases() + padding_and_text_mode_cases())
