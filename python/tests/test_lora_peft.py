"""Real PEFT as the oracle for lora-export and lora-merge (lora-peft.md A.4.4): our export loads with
PeftModel.from_pretrained on transformers' Gemma4ForCausalLM / Gemma4ForConditionalGeneration with no missing and
no unexpected adapter key (PEFT loads with strict=False and warns only about missing ones, so the keys are
checked here) and wraps nothing in the vision or audio tower; PEFT's merge_and_unload equals our lora-merge, and
PEFT's un-merged forward equals our forward over the merged checkpoint. Skipped, with the reason shown, when peft
(>= 0.19.1, whose ParamWrapper reads (experts, out, in) parameters the way transformers' Gemma 4 stores them) is
not installed."""
import json

import pytest
import torch

from conftest import run_g4
from lora_cases import (CASES, assert_close_to, expected_deltas, expected_merge, expected_pairs, expected_peft_state,  # noqa: F401
                        hf_linear_modules, load_tensors, lora)

peft = pytest.importorskip("peft", minversion="0.19.1",
                           reason="the PEFT oracle needs peft >= 0.19.1 (pip install -r python/requirements.txt)")
from peft import PeftModel, get_peft_model_state_dict  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402

IDS = [2, 17, 99, 3, 55, 23, 11, 7, 42, 64, 5, 31, 88, 19, 73, 26]
TOWERS = ("vision_tower", "audio_tower", "embed_vision", "embed_audio")


def base_model(hf, dtype):
    from transformers import AutoConfig, Gemma4ForCausalLM, Gemma4ForConditionalGeneration
    cls = Gemma4ForConditionalGeneration if hasattr(AutoConfig.from_pretrained(hf), "text_config") else Gemma4ForCausalLM
    return cls.from_pretrained(hf, dtype=dtype).eval()


def peft_model(lora, name, dtype):
    _, hf, _ = lora.adapter(name)
    return PeftModel.from_pretrained(base_model(hf, dtype), str(lora.export(name))).eval()


LOADS = ["e2b-tp1", "e4b-tp1", "31b-tp1", "26b-tp1", "e4b-vla-tp1", "26b-vl-tp2", "26b-per-expert",
         "31b-causal-cast-fp32", "26b-causal-cast-fp32", "31b-vlmlora"]


@pytest.mark.parametrize("name", LOADS)
def test_peft_loads_our_export_with_no_missing_or_unexpected_key_and_wraps_no_tower(lora, name):
    model = peft_model(lora, name, torch.float32)
    result = model.load_adapter(str(lora.export(name)), adapter_name="check")  # the load's own key report
    assert not result.missing_keys and not result.unexpected_keys, (result.missing_keys[:4], result.unexpected_keys[:4])
    state = get_peft_model_state_dict(model, adapter_name="default")
    exported = load_tensors(lora.export(name) / "adapter_model.safetensors")
    assert set(state) == set(exported), f"missing {sorted(set(state) - set(exported))[:4]}, unexpected {sorted(set(exported) - set(state))[:4]}"
    assert all(torch.equal(state[k], exported[k]) for k in state)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    assert wrapped and not [n for n in wrapped if any(t in n for t in TOWERS)]
    experts = [n for n in wrapped if n.endswith(".experts")]
    assert bool(experts) == CASES[name]["structure"].startswith("26b")


@pytest.mark.parametrize("name", ["e2b-tp1", "e4b-vla-tp1", "31b-tp1", "26b-tp1", "26b-per-expert", "26b-vl-tp1",
                                  "e2b-fp32", "e4b-fp32", "31b-causal-cast-fp32", "26b-causal-cast-fp32",
                                  "26b-cast-fp32-per-expert"])
def test_peft_merge_and_unload_equals_our_lora_merge(lora, name):
    """In the base's stored dtype: fp32 within 1e-6 relative, bf16 within 1 ulp (PEFT rounds an expert delta to bf16
    before adding it; our merge rounds once)."""
    _, hf, ref = lora.adapter(name)
    dtype = load_tensors(hf)[next(p for p in hf_linear_modules(hf) if "layers.0." in p) + ".weight"].dtype  # as stored
    merged = peft_model(lora, name, dtype).merge_and_unload().state_dict()
    ours = load_tensors(lora.merge(name))
    assert set(ours) <= set(merged)
    deltas = expected_deltas(*expected_pairs(ref, hf, hf_linear_modules(hf)), 8 / 4)
    for k, t in ours.items():
        assert_close_to(t, merged[k], k, rounded_delta=deltas[k] if k.endswith(("experts.gate_up_proj", "experts.down_proj")) else None)


@pytest.mark.parametrize("name", ["e2b-fp32", "e4b-fp32", "31b-causal-cast-fp32", "26b-causal-cast-fp32",
                                  "26b-cast-fp32", "26b-cast-fp32-per-expert"])
def test_peft_unmerged_forward_equals_our_forward_over_the_merged_checkpoint(lora, tmp_path, name):
    """fp32 logits: PEFT adds s·B·A·x beside each base linear (and beside each expert's matmul); our forward runs
    the merged weights. Cosine >= 0.999999."""
    from safetensors.torch import load_file
    model = peft_model(lora, name, torch.float32)
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor([IDS])).logits[0].double()
    run_g4("forward", "--hf", lora.merge(name), "--ids", ",".join(map(str, IDS)), "--logits", tmp_path / "l.safetensors", "-q")
    ours = load_file(tmp_path / "l.safetensors")["logits"][0].double()
    base = base_model(lora.adapter(name)[1], torch.float32)
    with torch.no_grad():
        plain = base(input_ids=torch.tensor([IDS])).logits[0].double()
    assert (theirs - plain).abs().max() > 1e-2 * plain.abs().max()  # the adapter moves the logits
    cos = torch.nn.functional.cosine_similarity(ours.flatten(), theirs.flatten(), dim=0)
    assert cos >= 0.999999, f"{name}: cosine {float(cos):.9f}"


def test_peft_reads_the_expert_packing_the_suite_states(tmp_path, lora):
    """The suite's own oracle against PEFT, without g4convert's export: the tensors expected_peft_state writes
    (experts rank-major, gate_up_proj under experts.base_layer) load into PEFT with no key left over and merge to
    W + s·B_e·A_e per expert (a swapped expert/rank order, r = 4 and E = 6, would not)."""
    from safetensors.torch import save_file
    _, hf, ref = lora.adapter("26b-cast-fp32-per-expert")
    linear, experts = expected_pairs(ref, hf, hf_linear_modules(hf))
    (tmp_path / "a").mkdir()
    save_file(expected_peft_state(linear, experts), tmp_path / "a" / "adapter_model.safetensors")
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
        "target_modules": r".*language_model\..*\.(q_proj|k_proj|v_proj|gate_proj|up_proj|down_proj)",
        "target_parameters": [f"{p}.{n}" for p in experts for n in ("gate_up_proj", "down_proj")]}))
    model = PeftModel.from_pretrained(base_model(hf, torch.float32), str(tmp_path / "a"))
    result = model.load_adapter(str(tmp_path / "a"), adapter_name="check")
    assert not result.missing_keys and not result.unexpected_keys
    merged = model.merge_and_unload().state_dict()
    want = expected_merge(load_tensors(hf), linear, experts, 8 / 4)
    for p in experts:
        for n in ("gate_up_proj", "down_proj"):
            assert_close_to(merged[f"{p}.{n}"], want[f"{p}.{n}"], f"{p}.{n}")
