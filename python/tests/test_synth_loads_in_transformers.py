"""synth output must load *strictly* in real transformers (no missing, unexpected or mismatched keys), hold the
bytes we wrote, and describe the same layer schedule transformers derives from the config we wrote."""
import json
import os

import pytest
import torch
from safetensors import safe_open
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

from conftest import run_g4, run_g4_json

TINY_PRESETS = ["tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"]


def load_strict(path, form):
    cls = Gemma4ForConditionalGeneration if form == "conditional" else Gemma4ForCausalLM
    model, info = cls.from_pretrained(path, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"transformers loading info for {path}: {problems}"
    return model


def transformers_schedule(text_config):
    """Per-layer geometry exactly as transformers' own config object resolves it."""
    modes = text_config.kv_sharing_modes
    out = []
    for i, layer_type in enumerate(text_config.layer_types):
        lc = text_config.per_layer_config[i]
        out.append({"type": layer_type, "head_dim": lc.head_dim, "kv_heads": lc.num_key_value_heads,
                    "kv_shared": modes[i] == "reuse", "stores_kv": modes[i] == "store"})
    return out


def ours(layers):
    return [{k: l[k] for k in ("type", "head_dim", "kv_heads", "kv_shared", "stores_kv")} for l in layers]


def assert_tensors_equal_files(model, path):
    """Every tensor transformers holds equals, bit for bit, the one in our safetensors files."""
    state = model.state_dict()
    files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    seen = 0
    for name in files:
        with safe_open(os.path.join(path, name), "pt") as f:
            assert f.metadata() == {"format": "pt"}
            for key in f.keys():
                if key not in state:
                    continue  # redundant shared-layer K/V: transformers ignores them by design
                ours_t = f.get_tensor(key)
                theirs = state[key]
                assert ours_t.dtype == theirs.dtype and ours_t.shape == theirs.shape, key
                assert torch.equal(ours_t, theirs), key
                seen += 1
    assert seen > 0


@pytest.mark.parametrize("form", ["causal", "conditional"])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_tiny_preset_loads_strictly_with_identical_tensors(tmp_path, preset, form, dtype):
    out = tmp_path / "ckpt"
    run_g4("synth", "--preset", preset, "--out", out, "--form", form, "--dtype", dtype, "--seed", "11", "--quiet")
    model = load_strict(out, form)
    assert model.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)
    assert_tensors_equal_files(model, out)
    report = run_g4_json("inspect", out)
    assert report["ok"], report["problems"]
    text_config = model.config.get_text_config()
    assert ours(report["layers"]) == transformers_schedule(text_config)
    # The forward runs (shapes consistent end to end) and layer_scalar really is what we wrote, not 1.0.
    logits = model(torch.tensor([[2, 17, 33, 5, 9, 64]])).logits
    assert logits.shape == (1, 6, 128) and torch.isfinite(logits).all()
    scalars = [v.float().item() for k, v in model.state_dict().items() if k.endswith("layer_scalar")]
    assert scalars and all(0.2 <= s < 0.9 for s in scalars)


@pytest.mark.parametrize("preset", ["tiny-e2b", "tiny-e4b"])
def test_older_uploads_with_shared_kv_load_and_transformers_ignores_the_extra_kv(tmp_path, preset):
    out = tmp_path / "ckpt"
    run_g4("synth", "--preset", preset, "--out", out, "--with-shared-kv", "--quiet")
    load_strict(out, "causal")
    report = run_g4_json("inspect", out)
    assert report["ok"] and report["redundant_shared_kv_tensors"] > 0


def test_sharded_synth_output_loads_through_the_index(tmp_path):
    out = tmp_path / "ckpt"
    run_g4("synth", "--preset", "tiny-26b-a4b", "--out", out, "--max-shard-size", "100KB", "--quiet")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    total = 0
    for shard in shards:
        with safe_open(out / shard, "pt") as f:
            total += sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    assert index["metadata"]["total_size"] == total
    model = load_strict(out, "causal")
    assert_tensors_equal_files(model, out)


def test_every_preset_schedule_matches_transformers_at_full_depth(presets):
    """All eight presets at their real depth, config only: transformers' per_layer_config and
    kv_sharing_modes agree with our derived schedule layer by layer."""
    from transformers import Gemma4TextConfig
    for name, p in presets.items():
        cfg = dict(p["config"])
        cfg.pop("model_type")
        text_config = Gemma4TextConfig(**cfg)
        assert ours(p["layers"]) == transformers_schedule(text_config), name
        # And the flat released form alone (without per_layer_config) means the same to transformers.
        flat = {k: v for k, v in cfg.items() if k != "per_layer_config"}
        assert ours(p["layers"]) == transformers_schedule(Gemma4TextConfig(**flat)), name


# Depths that keep each structure's features: E-series need a full layer before the shared block.
FULL_SIZE = [("e2b", 6), ("e4b", 8), ("26b-a4b", 2), ("31b", 2)]


@pytest.mark.skipif(os.environ.get("G4_SKIP_FULL_SIZE") == "1", reason="G4_SKIP_FULL_SIZE=1")
@pytest.mark.parametrize("preset,layers", FULL_SIZE)
def test_full_size_preset_loads_strictly(tmp_path, presets, preset, layers):
    out = tmp_path / "ckpt"
    run_g4("synth", "--preset", preset, "--layers", layers, "--out", out, "--form", "conditional", "--quiet")
    model = load_strict(out, "conditional")
    report = run_g4_json("inspect", out)
    assert report["ok"], report["problems"]
    full_depth = presets[preset]["config"]["num_hidden_layers"]
    assert report["variant"] == f"{preset} ({layers} of {full_depth} layers)"
    assert ours(report["layers"]) == transformers_schedule(model.config.get_text_config())
    if preset.startswith("e"):
        assert any(l["kv_shared"] for l in report["layers"]), "the cut-down E-series model still shares K/V"
