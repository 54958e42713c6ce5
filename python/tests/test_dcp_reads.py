"""Our torch_dist slab reader (McoreCheckpoint::read_slab, which mcore2hf, inspect, verify and forward --mcore use)
against torch.distributed.checkpoint itself: tensors of rank 0 to 4, a one-element and empty tensors, saved by
torch's own DCP writer with its default chunking (one chunk a tensor) and, through a planner that emits SHARD
write items, with row splits, column splits and grid splits (as tensor- and expert-parallel ranks save them).
Every tensor, every position on its first axis and on its first two axes, must come back as the identical bytes."""
import json
import os
import subprocess

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
from torch.distributed.checkpoint.planner import SavePlan, TensorWriteData, WriteItem, WriteItemType

from conftest import g4convert_path

TOOL = os.path.join(os.path.dirname(g4convert_path()), "dcp_slab")


def tensors():
    g = torch.Generator().manual_seed(7)
    out = {
        "scalar": torch.tensor(3.5),  # a tower clip bound
        "scalar_bf16": torch.tensor(-1.25, dtype=torch.bfloat16),
        "one": torch.tensor([42.0]),
        "empty": torch.zeros(0),
        "empty_mid": torch.zeros(3, 0, 4),
        "ids": torch.arange(11, dtype=torch.int64) * 977,
    }
    for rank in range(1, 5):
        shape = [4, 6, 2, 3][:rank]
        out[f"r{rank}_f32"] = torch.randn(*shape, generator=g)
        out[f"r{rank}_bf16"] = torch.randn(*shape, generator=g).to(torch.bfloat16)
    return out


def grid(shape, parts):
    """Chunks (offsets, sizes) splitting each dim d into parts[d] near-equal pieces."""
    chunks = [((), ())]
    for d, n in enumerate(shape):
        k = max(1, min(parts[d] if d < len(parts) else 1, n))
        chunks = [(o + (n * p // k,), s + (n * (p + 1) // k - n * p // k,)) for o, s in chunks for p in range(k)]
    return chunks


class ChunkingPlanner(DefaultSavePlanner):
    """Saves each tensor as the SHARD write items `split(name, tensor)` gives, as ranks holding parts would."""

    def __init__(self, split):
        super().__init__(flatten_state_dict=False)  # a flat dict of tensors already
        self.split = split

    def create_local_plan(self):
        items = []
        for fqn, t in self.state_dict.items():
            for offsets, sizes in self.split(fqn, t):
                items.append(WriteItem(
                    index=MetadataIndex(fqn, torch.Size(offsets)), type=WriteItemType.SHARD,
                    tensor_data=TensorWriteData(
                        chunk=ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes)),
                        properties=TensorProperties.create_from_tensor(t), size=t.size())))
        self.plan = SavePlan(items)
        return self.plan

    def resolve_data(self, write_item):
        t = self.state_dict[write_item.index.fqn]
        chunk = write_item.tensor_data.chunk
        for d, (o, s) in enumerate(zip(chunk.offsets, chunk.sizes)):
            t = t.narrow(d, o, s)
        return t.contiguous()


SPLITS = {
    "rows": lambda fqn, t: grid(t.shape, [3]),          # dim 0 (column-parallel weights; one chunk per layer)
    "columns": lambda fqn, t: grid(t.shape, [1, 1, 1, 2] if t.dim() == 4 else [1] * (t.dim() - 1) + [2]),  # last dim
    "grid": lambda fqn, t: grid(t.shape, [2, 3, 2, 2]),  # every dim
    "layers": lambda fqn, t: grid(t.shape, [t.shape[0] if t.dim() else 1]),  # one chunk per stacked position
}


def as_hex(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def read_back(path):
    proc = subprocess.run([TOOL, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_identical(path, state):
    got = read_back(path)
    assert set(got) == set(state)
    for name, t in state.items():
        g = got[name]
        assert g["shape"] == list(t.shape), name
        assert g["whole"] == as_hex(t), name
        if t.dim() >= 1:
            assert g["lead1"] == [as_hex(t[i]) for i in range(t.shape[0])], name
        if t.dim() >= 2:
            assert g["lead2"] == [as_hex(t[i, j]) for i in range(t.shape[0]) for j in range(t.shape[1])], name
    return got


def test_default_chunking_of_every_rank_reads_back_identically(tmp_path):
    state = tensors()
    dcp.save(state, checkpoint_id=str(tmp_path))
    got = check_identical(tmp_path, state)
    assert all(g["chunks"] == 1 for g in got.values())


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_split_chunkings_of_every_rank_read_back_identically(tmp_path, split):
    state = tensors()
    dcp.save(state, checkpoint_id=str(tmp_path), planner=ChunkingPlanner(SPLITS[split]))
    meta = dcp.FileSystemReader(str(tmp_path)).read_metadata()
    assert len(meta.state_dict_metadata["r4_f32"].chunks) > 1  # the planner's chunks are what torch stored
    check_identical(tmp_path, state)
    # torch reads the same values back: the planner wrote a checkpoint torch itself considers valid.
    loaded = {k: torch.empty_like(v) for k, v in state.items()}
    dcp.load(loaded, checkpoint_id=str(tmp_path))
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_overlapping_chunks_with_a_hole_are_refused_naming_the_key(tmp_path):
    """Rows [0,2) and [1,3) of a [4, 3] tensor: the element count adds up, row 3 is a hole, row 1 is stored twice."""
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(4, 3)}

    def overlapping(fqn, t):
        return [((0, 0), (2, 3)), ((1, 0), (2, 3))]

    class Unvalidated(ChunkingPlanner):
        def create_global_plan(self, all_plans):  # torch refuses to write it; a foreign writer might not
            from torch.distributed.checkpoint import default_planner
            saved = default_planner._validate_global_plan
            default_planner._validate_global_plan = lambda *a, **k: []
            try:
                return super().create_global_plan(all_plans)
            finally:
                default_planner._validate_global_plan = saved

    dcp.save(state, checkpoint_id=str(tmp_path), planner=Unvalidated(overlapping))
    proc = subprocess.run([TOOL, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "'w'" in proc.stderr and "overlap" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
