"""The committed tiny checkpoints: made by the recorded transformers version, loadable strictly, clean under
inspect, reproducible by their generator, and inspect also reads transformers' own sharded output."""
import json
import pathlib
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

from conftest import ROOT, TESTDATA, TINY, TOWERS, run_g4_json


def test_recorded_versions_are_the_pinned_ones():
    versions = json.loads((TESTDATA / "VERSIONS.json").read_text())
    assert versions["transformers"] == transformers.__version__
    assert versions["torch"] == torch.__version__.split("+")[0]


def load(path):
    arch = json.loads((path / "config.json").read_text())["architectures"][0]
    cls = Gemma4ForConditionalGeneration if arch == "Gemma4ForConditionalGeneration" else Gemma4ForCausalLM
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not {k: v for k, v in info.items() if v}, info
    return model


@pytest.mark.parametrize("name", TINY)
def test_tiny_checkpoint_is_clean_and_scales_are_not_one(name):
    path = TESTDATA / name
    model = load(path)
    report = run_g4_json("inspect", path, "--scan")
    assert report["ok"], report["problems"]
    assert report["variant"] == name
    for key, t in model.state_dict().items():
        if not key.startswith(("model.layers.", "model.language_model.")):
            continue  # towers keep transformers' init; only the text decoder is ours to check
        if key.endswith(("norm.weight", "router.scale", "per_expert_scale")):
            assert (t.float() - 1).abs().min() >= 0.099, key
        if key.endswith("layer_scalar"):
            assert 0.2 <= t.float().item() <= 0.9, key


@pytest.mark.parametrize("name", TOWERS)
def test_tower_checkpoint_is_clean_with_finite_clip_bounds_and_no_tower_tensor_left_at_its_init(name):
    """Every clipped linear carries four finite 0-d bounds around 0 (transformers' default is +-inf, which would
    hide a dropped bound), and no tower tensor is a constant (ones, zeros) as transformers initialises them."""
    path = TESTDATA / name
    model = load(path)
    report = run_g4_json("inspect", path, "--scan")
    assert report["ok"], report["problems"]
    assert report["variant"] == name.rsplit("-", 1)[0]
    towers = {k: t for k, t in model.state_dict().items() if k.startswith(("model.vision_tower.", "model.audio_tower."))}
    assert any(k.startswith("model.audio_tower.") for k in towers) == ("vla" in name)
    clipped = [k[:-len(".linear.weight")] for k in towers if k.endswith(".linear.weight")]
    assert clipped and model.config.vision_config.use_clipped_linears
    for prefix in clipped:
        b = {n: towers[f"{prefix}.{n}"] for n in ("input_min", "input_max", "output_min", "output_max")}
        assert all(t.dim() == 0 and torch.isfinite(t) for t in b.values()), prefix
        assert b["input_min"] < 0 < b["input_max"] and b["output_min"] < 0 < b["output_max"], prefix
    for k, t in towers.items():
        assert t.numel() == 1 or not torch.all(t == t.flatten()[0]), f"{k} is a constant"


def test_generator_reproduces_the_committed_checkpoints(tmp_path):
    """Rerun testdata/gen/make_tiny_checkpoints.py into a scratch copy and compare every tensor bit for bit."""
    scratch = tmp_path / "testdata"
    (scratch / "gen").mkdir(parents=True)
    gen = TESTDATA / "gen" / "make_tiny_checkpoints.py"
    (scratch / "gen" / gen.name).write_text(gen.read_text())
    subprocess.run([sys.executable, str(scratch / "gen" / gen.name)], check=True, capture_output=True)
    for name in TINY + TOWERS:
        ours = load_file(TESTDATA / name / "model.safetensors")
        fresh = load_file(scratch / name / "model.safetensors")
        assert ours.keys() == fresh.keys(), name
        for key in ours:
            assert torch.equal(ours[key], fresh[key]), f"{name}: {key}"


def test_inspect_reads_a_sharded_checkpoint_saved_by_transformers(tmp_path):
    model = load(TESTDATA / "tiny-26b-a4b")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    report = run_g4_json("inspect", tmp_path / "sharded", "--scan")
    assert report["ok"], report["problems"]
    assert report["files"] > 1
