"""megatron-core's dist_checkpointing as the oracle for our torch_dist output, for whichever megatron-core this Python
imports: the venv's own 0.16.1, or 0.19.2 with `bin/pyenv --mcore-0.19` first on PYTHONPATH. One Python can import
only one `megatron`, so a test session drives each version through a worker process (`Oracle`); the checks below
are the same code for both.

Worker protocol (python mcore_oracle.py): one JSON request a line on stdin, {"call": NAME, "args": [...]}, one
JSON reply a line on the worker's original stdout, {"value": ...} or {"error": TYPE, "message": ...}."""
import json
import os
import socket
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
# The common state every reader expects of a converted checkpoint (MB's import writes the same).
COMMON_STATE = {"checkpoint_version": 3.0, "iteration": 0,
                "content_metadata": {"singleton_local_shards": False, "chained_optim_avoid_prefix": True}}


def init_megatron():
    """dist_checkpointing in a one-process gloo group (it asks for the rank)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint.metadata as dcp_metadata
    # megatron-core (0.16.1 and 0.19.2 alike) builds torch.empty(size, **TensorProperties.__dict__), which torch >= 2.1x
    # breaks by adding a `strides` attribute (None in ours, the tensor's strides when torch or megatron-core saved
    # it): it fails the same way on checkpoints torch itself writes (docs/spec-notes.md).
    original = dcp_metadata.TensorProperties.__setstate__

    def setstate(self, state):
        original(self, state)
        self.__dict__.pop("strides", None)

    dcp_metadata.TensorProperties.__setstate__ = setstate
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=0, world_size=1)
    from megatron.core import dist_checkpointing
    return dist_checkpointing


def version(dc):
    from megatron.core.package_info import __version__
    return __version__


def tensor_keys(dc, it):
    return sorted(dc.load_tensors_metadata(str(it)))


def check_plain_load(dc, it, src):
    """load_tensors_metadata lists exactly the bridge mapping's keys; load_plain_tensors gives its exact tensors."""
    import torch
    from bridge_reference import expected_checkpoint
    expected, *_ = expected_checkpoint(src)
    meta = dc.load_tensors_metadata(str(it))
    assert set(meta) == set(expected), f"missing {set(expected) - set(meta)}, unexpected {set(meta) - set(expected)}"
    loaded = dc.load_plain_tensors(str(it))
    for key, t in expected.items():
        assert loaded[key].dtype == t.dtype, key
        assert torch.equal(loaded[key], t), key


def check_sharded_load(dc, it, src):
    """Per-layer ShardedTensors on the stacked axes (per-type attention stacks) and the `_extra_state`
    ShardedObjects Megatron-Bridge's model requests, loaded with MCore's default strictness."""
    import torch
    from megatron.core.dist_checkpointing import ShardedObject, ShardedTensor
    from bridge_reference import expected_checkpoint
    expected, extra, per_layer, *_ = expected_checkpoint(src)
    request, want = {}, {}
    for key, t in expected.items():
        stacked = ".decoder.layers." in "." + key and not per_layer and not key.split("decoder.layers.")[1][0].isdigit()
        if not stacked:
            request[key] = ShardedTensor.from_rank_offsets(key, torch.empty_like(t))
            want[key] = t
            continue
        for i in range(t.shape[0]):
            request[f"{key}#{i}"] = ShardedTensor.from_rank_offsets(key, torch.empty_like(t[i]), (0, i, t.shape[0]),
                                                                    prepend_axis_num=1)
            want[f"{key}#{i}"] = t[i]
    for key in extra:
        base, shard = key.split("/shard_")
        offset, shape = shard.split("_")
        request[key] = ShardedObject(base, None, tuple(map(int, shape.split("."))), tuple(map(int, offset.split("."))))
    loaded = dc.load(request, str(it))
    for k, t in want.items():
        assert torch.equal(loaded[k], t), k
    for key in extra:  # TE modules save an empty uint8 tensor, Megatron's local linears None
        v = loaded[key]
        assert v is None or (torch.is_tensor(v) and v.dtype == torch.uint8 and v.numel() == 0), key


def common_state(dc, it):
    return dc.load_common_state_dict(str(it))


def check_same_tensors(dc, a, b):
    """load_plain_tensors gives the same keys for checkpoints `a` and `b`, and the same shapes, dtypes and bytes
    (tensors) or values (the common state it merges in)."""
    import torch
    ta, tb = dc.load_plain_tensors(str(a)), dc.load_plain_tensors(str(b))
    assert set(ta) == set(tb), f"only in {a}: {sorted(set(ta) - set(tb))}, only in {b}: {sorted(set(tb) - set(ta))}"
    for k, t in ta.items():
        if torch.is_tensor(t):
            assert t.dtype == tb[k].dtype and t.shape == tb[k].shape and torch.equal(t, tb[k]), k
        else:
            assert t == tb[k], f"{k}: {t!r} vs {tb[k]!r}"


CALLS = {f.__name__: f for f in (version, tensor_keys, check_plain_load, check_sharded_load, common_state,
                                 check_same_tensors)}


class OracleError(Exception):
    """An exception megatron-core raised in the worker (not a failed check: those are AssertionErrors)."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class Oracle:
    """A worker process importing one megatron-core: `tree` (a --target directory) first on its path, or the venv's."""

    def __init__(self, tree=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, HERE, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mcore_oracle.py")], env=env, cwd=HERE,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = self.call("version")

    def call(self, name, *args):
        self.proc.stdin.write(json.dumps({"call": name, "args": [str(a) for a in args]}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"megatron-core worker exited ({self.proc.wait()})")
        reply = json.loads(line)
        if "error" not in reply:
            return reply["value"]
        if reply["error"] == "AssertionError":
            raise AssertionError(reply["message"])
        raise OracleError(reply["error"], reply["message"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def serve():
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # megatron's and torch's prints go to stderr, replies alone to the pipe
    warnings.filterwarnings("ignore")
    dc = init_megatron()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = {"value": CALLS[req["call"]](dc, *req["args"])}
        except Exception as e:  # reported to the test, which decides
            reply = {"error": type(e).__name__, "message": str(e)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
