"""lora-export, lora-merge and verify --adapter on Megatron-Bridge LoRA checkpoints that megatron-core itself wrote
(lora_save.py: MB 0.6.2's keys, stacks, TP chunkings and expert layouts), against this suite's own statement of
the maths (lora_cases.py): the exported PEFT tensors, the merged weights W + s·B·A, TP-agnostic reading, the
legacy expert layout, and the refusals. PEFT itself is the oracle in test_lora_peft.py."""
import json

import pytest
import torch
import torch.distributed.checkpoint as dcp

from conftest import run_g4
from lora_cases import (CASES, assert_close_to, expected_merge, expected_pairs, expected_peft_state,  # noqa: F401
                        hf_linear_modules, load_tensors, lora)

VALID = [n for n in CASES if n.endswith(("-tp1", "-tp2")) or "fp32" in n and "proj" not in n] + ["26b-legacy", "26b-per-expert", "31b-full", "26b-full", "31b-vlmlora"]


def dcp_tensors(it):
    md = dcp.FileSystemReader(str(it)).read_metadata().state_dict_metadata
    out = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.items() if hasattr(v, "size")}
    dcp.load(out, checkpoint_id=str(it))
    return out


@pytest.mark.parametrize("name", ["e2b-tp2", "26b-vl-tp2", "26b-vl-per-expert-tp2", "26b-legacy", "31b-full"])
def test_lora_save_writes_the_generators_adapters_as_torch_reads_them_back(lora, name):
    """The generator's own check: torch.distributed.checkpoint reassembles exactly its global adapter tensors from
    megatron-core's chunks (and, in the full form, the base's tensors next to them)."""
    ckpt, _, ref = lora.adapter(name)
    got = dcp_tensors(ckpt / "iter_0000100")
    adapters = {k: v for k, v in got.items() if ".adapter." in k}
    assert set(adapters) == set(ref)
    assert all(torch.equal(adapters[k], ref[k]) for k in ref)
    assert (len(got) > len(adapters)) == CASES[name].get("form", "adapter").startswith("full")


@pytest.mark.parametrize("name", VALID)
def test_lora_export_writes_the_peft_tensors_of_the_megatron_adapters(lora, name):
    """Every exported tensor, bit for bit in fp32: q/k/v from the per-group de-interleave of the fused B with the
    one A, gate/up halves of fc1 B, experts packed rank-major; no v_proj on K=V layers, no k/v on KV-shared layers
    (transformers builds no module there); the config's rank, alpha, dropout and expert parameters."""
    ckpt, hf, ref = lora.adapter(name)
    out = lora.export(name)
    linear, experts = expected_pairs(ref, hf, hf_linear_modules(hf))
    want = expected_peft_state(linear, experts)
    got = load_tensors(out / "adapter_model.safetensors")
    assert set(got) == set(want), f"missing {sorted(set(want) - set(got))[:6]}, unexpected {sorted(set(got) - set(want))[:6]}"
    for k, t in want.items():
        assert got[k].dtype == torch.float32 and torch.equal(got[k], t), k
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 8
    assert not cfg.get("use_dora") and not cfg.get("fan_in_fan_out") and not cfg.get("use_rslora")
    if experts:
        assert cfg["lora_dropout"] == 0
        params = {f"{p}.{n}" for p in experts for n in ("gate_up_proj", "down_proj")}
        assert set(cfg["target_parameters"]) == params
    else:
        assert not cfg.get("target_parameters")


def test_lora_export_reads_the_run_config_megatron_bridge_writes_with_params_to_save_as_a_set(lora):
    """MB's ConfigContainer.to_yaml keeps the PEFT dataclass's params_to_save (the trainable parameter names
    set_params_to_save collects before training) as a Python set: yaml.safe_dump writes `!!set`, which
    yaml.safe_load reads back. The export is the one of the same adapter without that field."""
    text = (lora.adapter("31b-params-to-save")[0] / "iter_0000100" / "run_config.yaml").read_text()
    assert "params_to_save: !!set" in text
    a, b = lora.export("31b-params-to-save"), lora.export("31b-tp1")
    assert (a / "adapter_model.safetensors").read_bytes() == (b / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("structure", ["e2b", "e4b", "31b", "26b", "e4b-vla", "26b-vl"])
def test_tp1_and_tp2_chunkings_export_byte_identical_files(lora, structure):
    """The same adapter saved as TP=1 and as TP=2 (A on the rank axis or columns, B on rows, fc1 B as gate and up
    chunks of each rank, experts in every slot): the same bytes out."""
    one, two = lora.export(f"{structure}-tp1"), lora.export(f"{structure}-tp2")
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        assert (one / f).read_bytes() == (two / f).read_bytes(), f


def test_an_adapter_saved_by_megatron_core_0_19_exports_as_the_one_saved_by_0_16(lora):
    """megatron-core 0.19.2's save (the common state inside DCP, no common.pt) of the same adapter, at TP=2."""
    ckpt = lora.adapter("26b-mcore-0.19-tp2")[0] / "iter_0000100"
    assert not (ckpt / "common.pt").exists()
    a, b = lora.export("26b-mcore-0.19-tp2"), lora.export("26b-tp1")
    assert (a / "adapter_model.safetensors").read_bytes() == (b / "adapter_model.safetensors").read_bytes()


def test_legacy_2d_shared_expert_layout_exports_as_the_expert_axis_layout(lora):
    """Old shared-expert checkpoints store the expert adapter without the E axis ([L, r, in]): accepted, and the
    same export as the same adapter written in every expert slot."""
    a, b = lora.export("26b-legacy"), lora.export("26b-tp1")
    assert (a / "adapter_model.safetensors").read_bytes() == (b / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["e2b-tp1", "e4b-vla-tp2", "31b-tp1", "26b-tp2", "26b-per-expert", "26b-vl-tp1",
                                  "e2b-fp32", "e4b-fp32", "31b-causal-cast-fp32", "26b-causal-cast-fp32",
                                  "26b-cast-fp32-per-expert", "31b-full"])
def test_lora_merge_gives_w_plus_s_b_a_and_copies_the_rest(lora, name):
    """lora-merge of the adapter onto its HF base: each targeted tensor within fp32 noise (1e-6) / 1 bf16 ulp of
    float64 W + s·B·A rounded once; every other tensor, the key set, the dtypes and config.json unchanged."""
    ckpt, hf, ref = lora.adapter(name)
    out = lora.merge(name)
    base = load_tensors(hf)
    linear, experts = expected_pairs(ref, hf, hf_linear_modules(hf))
    want = expected_merge(base, linear, experts, 8 / 4)
    got = load_tensors(out)
    assert set(got) == set(base)
    changed = {p + ".weight" for p in linear} | {f"{p}.{n}" for p in experts for n in ("gate_up_proj", "down_proj")}
    for k, t in want.items():
        if k in changed:
            assert_close_to(got[k], t, k)
        else:
            assert got[k].dtype == t.dtype and torch.equal(got[k], t), f"{k} changed"
    assert (out / "config.json").read_bytes() == (hf / "config.json").read_bytes()


@pytest.mark.parametrize("name", ["31b-tp1", "26b-tp1"])
def test_lora_merge_onto_the_megatron_base_equals_the_merge_onto_the_hf_base(lora, name):
    a, b = load_tensors(lora.merge(name)), load_tensors(lora.merge(name, base="mcore"))
    assert set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


REFUSED = [("31b-dora", "DoRA"), ("26b-shared-outer", "experts_shared_outer_loras"), ("26b-proj", "linear_proj")]


@pytest.mark.parametrize("command", ["lora-export", "lora-merge"])
@pytest.mark.parametrize("name,word", REFUSED)
def test_refusals_exit_2_with_one_line_naming_the_problem(lora, tmp_path, command, name, word):
    ckpt, hf, _ = lora.adapter(name)
    extra = ["--reference-hf", hf] if command == "lora-export" else ["--base", hf]
    proc = run_g4(command, "--adapter", ckpt, "--out", tmp_path / "out", *extra, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and word in proc.stderr, proc.stderr


def test_allow_inexact_lets_the_26b_linear_proj_adapters_through_with_a_warning(lora, tmp_path):
    ckpt, hf, _ = lora.adapter("26b-proj")
    proc = run_g4("lora-export", "--adapter", ckpt, "--out", tmp_path / "out", "--reference-hf", hf, "--allow-inexact")
    assert "linear_proj" in proc.stderr and (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("name,rows", [("31b-nonzero-v", "v"), ("e4b-nonzero-kv", "k")])
def test_non_zero_b_rows_in_slots_hf_has_no_module_for_are_a_warning(lora, tmp_path, name, rows):
    """B rows MB never trains (V of K=V layers, K/V of KV-shared layers) that are not zero cannot be exported
    (HF has no module for them): a warning, and the export is still the exact one of the other rows."""
    ckpt, hf, ref = lora.adapter(name)
    proc = run_g4("lora-export", "--adapter", ckpt, "--out", tmp_path / "out", "--reference-hf", hf)
    assert "warning" in proc.stderr.lower(), proc.stderr
    want = expected_peft_state(*expected_pairs(ref, hf, hf_linear_modules(hf)))
    got = load_tensors(tmp_path / "out" / "adapter_model.safetensors")
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("name", ["31b-tp1", "26b-tp1", "e2b-tp1"])
def test_verify_adapter_passes_on_a_faithful_adapter(lora, name):
    ckpt, hf, _ = lora.adapter(name)
    proc = run_g4("verify", "--hf", hf, "--adapter", ckpt, "--mcore", lora.base(CASES[name]["structure"]), check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr


@pytest.mark.parametrize("name", ["31b-full", "26b-full"])
def test_verify_adapter_takes_the_base_from_a_full_checkpoint_holding_base_weights_beside_the_adapters(lora, name):
    """No --mcore: a full checkpoint (megatron-core's save of base and adapters together) is its own base."""
    ckpt, hf, _ = lora.adapter(name)
    proc = run_g4("verify", "--hf", hf, "--adapter", ckpt, "--json", check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    report = json.loads(proc.stdout)
    assert report["adapter"]["megatron_base_from"] == "base weights beside the adapters"
    assert report["passed"] and min(l["residual"]["cosine"] for l in report["layers"]) >= 0.999999


def test_verify_adapter_fails_on_26b_linear_proj_adapters_that_hf_places_before_the_post_norm(lora):
    """MB adds the 26B linear_proj adapter after the post-attention norm, HF's o_proj LoRA before it: with
    --allow-inexact verify runs, and the two forwards differ."""
    ckpt, hf, _ = lora.adapter("26b-proj")
    proc = run_g4("verify", "--hf", hf, "--adapter", ckpt, "--mcore", lora.base("26b"), "--allow-inexact", check=False)
    assert proc.returncode not in (0, 2), proc.stdout[-2000:] + proc.stderr
    assert "attention" in proc.stdout.splitlines()[-1], proc.stdout[-2000:]  # where the divergence starts
