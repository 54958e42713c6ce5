"""verify and the Megatron-semantics forward against real software: the forward over our converted checkpoint
gives transformers' logits for the original; verify passes on clean conversions of every tiny preset, and on a
checkpoint whose V/K rows were swapped with torch (re-chunked by torch.distributed.checkpoint) it fails and
names the layer and sub-block."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import TESTDATA, TINY, TOWERS, run_g4

IDS = [2, 17, 99, 3, 55, 23, 11, 7, 42, 64, 5, 31, 88, 19, 73, 26]


def transformers_logits(path):
    from transformers import AutoConfig, Gemma4ForCausalLM, Gemma4ForConditionalGeneration
    cls = Gemma4ForConditionalGeneration if hasattr(AutoConfig.from_pretrained(path), "text_config") else Gemma4ForCausalLM
    model = cls.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([IDS])).logits[0]


@pytest.mark.parametrize("name", TINY + TOWERS)
def test_megatron_forward_over_the_conversion_gives_transformers_logits(tmp_path, name):
    src = TESTDATA / name
    run_g4("hf2mcore", "--hf", src, "--out", tmp_path / "m", "-q")
    run_g4("forward", "--mcore", tmp_path / "m", "--ids", ",".join(map(str, IDS)), "--logits", tmp_path / "l.safetensors", "-q")
    ours = load_file(tmp_path / "l.safetensors")["logits"][0]
    ref = transformers_logits(src)
    rel = (ours - ref).abs().max() / ref.abs().max()
    assert rel < 1e-5, f"{name}: relative max |dlogit| {rel:.3g}"
    assert torch.equal(ours[-1].argmax(), ref[-1].argmax())


@pytest.mark.parametrize("preset", ["tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"])
@pytest.mark.parametrize("form", ["causal", "conditional"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_verify_passes_on_clean_conversions_of_every_tiny_preset(tmp_path, preset, form, dtype):
    run_g4("synth", "--preset", preset, "--form", form, "--dtype", dtype, "--out", tmp_path / "hf", "-q")
    run_g4("hf2mcore", "--hf", tmp_path / "hf", "--out", tmp_path / "m", "-q")
    proc = run_g4("verify", "--hf", tmp_path / "hf", "--mcore", tmp_path / "m", "--dtype", dtype,
                  "--report", tmp_path / "r.json", "--plot", tmp_path / "p.svg")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["first_divergent_layer"] is None and report["first_divergent_block"] is None
    assert {"layers", "logits", "embedding", "thresholds"} <= set(report)
    assert all(l["top1_agrees"] for l in report["logits"])
    assert (tmp_path / "p.svg").read_text().startswith("<svg") and "verdict: PASS" in proc.stdout


def test_verify_names_the_layer_and_block_of_a_torch_planted_kv_swap(tmp_path):
    """K and V rows of group 0 swapped in layer 3 (sliding rank 2) of tiny-26b-a4b, the checkpoint rewritten by
    torch.distributed.checkpoint with its own chunking."""
    import torch.distributed.checkpoint as dcp
    src = TESTDATA / "tiny-26b-a4b"
    run_g4("hf2mcore", "--hf", src, "--out", tmp_path / "m", "--common-pt", "-q")  # dcp.save below drops byte items
    it = tmp_path / "m" / "iter_0000000"
    md = dcp.FileSystemReader(str(it)).read_metadata()
    sd = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items() if hasattr(v, "size")}
    dcp.load(sd, checkpoint_id=str(it))
    qkv = sd["language_model.decoder.layers.self_attention_sliding.linear_qkv.weight"]  # [4, (4+2·2)·32, 64]
    k_rows, v_rows = slice(64, 96), slice(96, 128)
    k = qkv[2, k_rows].clone()
    qkv[2, k_rows] = qkv[2, v_rows]
    qkv[2, v_rows] = k
    out = tmp_path / "planted"
    dcp.save(sd, checkpoint_id=str(out))
    for f in ("metadata.json", "common.pt", "hf_config.json"):
        shutil.copy(it / f, out / f)
    proc = run_g4("verify", "--hf", src, "--mcore", out, "--report", tmp_path / "r.json", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["passed"]
    assert report["first_divergent_layer"] == 3 and report["first_divergent_block"] == "attention"
    assert report["layers"][2]["divergent_block"] is None and report["layers"][3]["divergent_block"] == "attention"
