"""Our torch.save writer against torch.load(weights_only=True), and our safe reader against torch.save."""
import argparse
import collections
import json
import os
import subprocess
import zipfile

import torch

from conftest import ROOT

TOOL = os.path.join(os.path.dirname(os.environ.get("G4CONVERT", str(ROOT / "build" / "g4convert"))), "torch_sample")


def fnv1a(t):
    h = 0xcbf29ce484222325
    for byte in t.contiguous().reshape(-1).view(torch.uint8).tolist():
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return str(h)


def test_our_file_loads_with_weights_only_and_is_a_valid_zip(tmp_path):
    path = tmp_path / "sample.pt"
    subprocess.run([TOOL, "write", path], check=True)
    assert zipfile.ZipFile(path).testzip() is None  # every CRC right
    with torch.serialization.safe_globals([argparse.Namespace]):  # Megatron allowlists Namespace the same way
        d = torch.load(path, weights_only=True)
    assert torch.equal(d["f32"], torch.tensor([[1.0, -2.5, 3.25], [0.0, 1e-30, -7.0]], dtype=torch.float32))
    assert d["bf16"].dtype == torch.bfloat16 and d["bf16"].shape == (2, 2, 2)
    assert d["bf16"].view(torch.int16).flatten().tolist()[:3] == [0x3f80, -16352, 0x4050]
    assert d["bf16"].flatten()[4].item() == float("inf") and d["bf16"].flatten()[5].item() == float("-inf")
    assert d["i64"].tolist() == [-3, 1 << 40, 7]
    assert d["scalar"].shape == () and d["scalar"].item() == 42.0
    assert d["nested"] == [-1, 0.5, "ü", None, (True, 1 << 50)]
    assert d["blob"] == b"\x00\x80\xff"
    assert d["args"].tensor_model_parallel_size == 1
    assert d["dtype"] is torch.bfloat16
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():  # data 64-byte aligned, as torch writes it (for mmap)
            extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
            assert (info.header_offset + 30 + len(info.filename) + extra_len) % 64 == 0, info.filename
    # mmap loading (the path Megatron's DCP reader takes for large blobs) reads the same values
    with torch.serialization.safe_globals([argparse.Namespace]):
        m = torch.load(path, weights_only=True, mmap=True)
    assert torch.equal(m["bf16"], d["bf16"])


def test_our_reader_sees_what_torch_saved(tmp_path):
    path = tmp_path / "torch.pt"
    tensors = {"a": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "b": torch.tensor(3.0),
               "c": torch.arange(10, dtype=torch.int64)[2:7]}  # a view into a larger storage
    obj = collections.OrderedDict(**tensors, lst=[1, 2.5, "s", None, (True,)], n={"tp": 2}, big=1 << 62, neg=-70000)
    torch.save(obj, path)
    out = json.loads(subprocess.run([TOOL, "dump", path], check=True, capture_output=True, text=True).stdout)
    assert out["call"] == "collections.OrderedDict"
    items = out["items"]
    for name, t in tensors.items():
        assert items[name]["tensor"] == {torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        assert items[name]["shape"] == list(t.shape)
        assert items[name]["fnv1a"] == fnv1a(t), name
    assert items["lst"] == [1, 2.5, "s", None, [True]]
    assert items["n"] == {"tp": 2} and items["big"] == 1 << 62 and items["neg"] == -70000


def test_our_reader_refuses_code_execution(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    proc = subprocess.run([TOOL, "dump", path], capture_output=True, text=True)
    assert proc.returncode == 1 and "not on the allowlist" in proc.stderr and "pwned" not in proc.stdout


def test_our_dcp_reader_sees_what_torch_distributed_checkpoint_saved(tmp_path):
    import torch.distributed.checkpoint as dcp
    sd = {"decoder.layers.self_attention.linear_qkv.weight": torch.randn(2, 12, 8).to(torch.bfloat16),
          "embedding.word_embeddings.weight": torch.randn(16, 8),
          "decoder.layers.layer_scalar": torch.tensor([[0.5], [0.25]]),
          "common": {"iteration": 5, "args": "x"}}
    dcp.save(sd, checkpoint_id=str(tmp_path / "ckpt"))
    out = json.loads(subprocess.run([TOOL, "dcp", tmp_path / "ckpt"], check=True, capture_output=True, text=True).stdout)
    for fqn, t in sd.items():
        if not torch.is_tensor(t):
            continue
        ours = out["tensors"][fqn]
        assert ours["shape"] == list(t.shape)
        assert ours["dtype"] == {torch.bfloat16: "BF16", torch.float32: "F32"}[t.dtype]
        for chunk in ours["chunks"]:
            part = t[tuple(slice(o, o + s) for o, s in zip(chunk["offsets"], chunk["sizes"]))]
            assert chunk["fnv1a"] == fnv1a(part), fqn
    assert sorted(out["bytes"]) == ["common.args", "common.iteration"]


def test_torch_distributed_checkpoint_loads_what_our_dcp_writer_wrote(tmp_path):
    import torch.distributed.checkpoint as dcp
    ckpt = tmp_path / "ours"
    subprocess.run([TOOL, "dcp-write", ckpt], check=True)
    md = dcp.FileSystemReader(str(ckpt)).read_metadata()
    assert set(md.state_dict_metadata) == {
        "decoder.layers.mlp.linear_fc1.weight", "embedding.word_embeddings.weight",
        "decoder.layers.mlp.linear_fc1._extra_state/shard_0_1", "decoder.layers.mlp.linear_fc2._extra_state/shard_0_1"}
    sd = {"decoder.layers.mlp.linear_fc1.weight": torch.zeros(3, 4, 5, dtype=torch.bfloat16),
          "embedding.word_embeddings.weight": torch.zeros(6, 4),
          "decoder.layers.mlp.linear_fc1._extra_state/shard_0_1": None,
          "decoder.layers.mlp.linear_fc2._extra_state/shard_0_1": None}
    dcp.load(sd, checkpoint_id=str(ckpt))
    for name, shape in [("decoder.layers.mlp.linear_fc1.weight", (3, 4, 5)), ("embedding.word_embeddings.weight", (6, 4))]:
        expected = (torch.arange(torch.Size(shape).numel(), dtype=torch.float32) * 0.5).reshape(shape)
        assert torch.equal(sd[name].float(), expected.to(sd[name].dtype).float()), name
    # each byte item is torch.save([x]); each tensor blob must also pass torch.load(weights_only=True)
    import io
    reader = dcp.FileSystemReader(str(ckpt))
    for index, info in reader.storage_data.items():
        blob = (ckpt / info.relative_path).read_bytes()[info.offset:info.offset + info.length]
        obj = torch.load(io.BytesIO(blob), weights_only=True)
        if index.fqn.endswith("fc1._extra_state/shard_0_1"):
            assert isinstance(obj, list) and obj[0].dtype == torch.uint8 and obj[0].numel() == 0
        elif index.fqn.endswith("fc2._extra_state/shard_0_1"):
            assert obj == [None]
        else:
            assert torch.is_tensor(obj) and list(obj.shape) == list(md.state_dict_metadata[index.fqn].chunks[0].sizes)
