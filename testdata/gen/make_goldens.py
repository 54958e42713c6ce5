#!/usr/bin/env python3
"""Writes testdata/goldens/: what real transformers computes for the tiny checkpoints, so the C++ suite can
check g4convert's forward without Python. One safetensors file per (structure, input, dtype) holding the
inputs, the logits [B,S,V], the residual stream after the embedding and after every layer (hidden.{i}),
and the router's top-k experts and weights per MoE layer; metadata records the versions.

Run:  $(bin/pyenv)/bin/python testdata/gen/make_goldens.py [OUT_DIR]
"""
import json
import pathlib
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRUCTURES = ["tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Sequences longer than the tiny models' sliding window (4), so the window matters.
PLAIN = {"input_ids": [[2, 17, 33, 5, 9, 64, 100, 3, 77, 12]]}
# Right padding: row 1 has 6 real tokens, then pad (id 0) marked 0 in attention_mask.
PADDED = {"input_ids": [[2, 17, 33, 5, 9, 64, 100, 3, 77, 12], [2, 90, 44, 11, 8, 120, 0, 0, 0, 0]],
          "attention_mask": [[1] * 10, [1] * 6 + [0] * 4]}
# Image placeholder runs (image_token_id 4, between boi 5 and eoi 6): a run of 3 and a run of 6 (longer than
# the window, where transformers' current and older vision masks differ), plus a video run (token 7, type 2).
VISION_IDS = [2, 5, 4, 4, 4, 6, 30, 5, 4, 4, 4, 4, 4, 4, 6, 40, 5, 7, 7, 6, 19]
VISION = {"input_ids": [VISION_IDS],
          "mm_token_type_ids": [[1 if t == 4 else 2 if t == 7 else 0 for t in VISION_IDS]]}


def cases(structure):
    config = json.loads((ROOT / structure / "config.json").read_text())
    out = {"plain": PLAIN, "padded": PADDED}
    if config["architectures"][0] == "Gemma4ForConditionalGeneration":
        out["vision"] = VISION
    return out


def load(structure, dtype):
    path = ROOT / structure
    arch = json.loads((path / "config.json").read_text())["architectures"][0]
    cls = Gemma4ForConditionalGeneration if arch == "Gemma4ForConditionalGeneration" else Gemma4ForCausalLM
    model = cls.from_pretrained(path, dtype=dtype)
    model.eval()
    return model


def run(model, case):
    text = model.model.language_model if hasattr(model.model, "language_model") else model.model
    captured = {"hidden": [], "routing": {}}
    hooks = [text.embed_tokens.register_forward_hook(lambda m, i, o: captured["hidden"].append(o.detach().float().clone()))]
    for idx, layer in enumerate(text.layers):
        hooks.append(layer.register_forward_hook(lambda m, i, o: captured["hidden"].append(o.detach().float().clone())))
        if getattr(layer, "enable_moe_block", False):
            hooks.append(layer.router.register_forward_hook(
                lambda m, i, o, idx=idx: captured["routing"].__setitem__(
                    idx, (o[2].detach().clone(), o[1].detach().float().clone(), o[0].detach().float().clone()))))
    kwargs = {"input_ids": torch.tensor(case["input_ids"])}
    if "attention_mask" in case:
        kwargs["attention_mask"] = torch.tensor(case["attention_mask"])
    if "mm_token_type_ids" in case:
        kwargs["mm_token_type_ids"] = torch.tensor(case["mm_token_type_ids"])
    with torch.no_grad():
        logits = model(**kwargs, use_cache=False).logits.float()
    for h in hooks:
        h.remove()
    assert len(captured["hidden"]) == 1 + len(text.layers), "one embedding call, then one output per layer"
    return logits, captured["hidden"], captured["routing"]


def check_well_conditioned(structure, case_name, case, sdpa_logits):
    """A bf16 golden is only a fair test where transformers agrees with itself: its eager attention path must
    give a last-token logit cosine >= 0.999 against its default SDPA path for every row. An input at a bf16
    decision boundary (say a router near-tie at the last token) fails this: there one rounding difference
    anywhere flips the result, in transformers as in any reimplementation, so it is not used as a golden."""
    arch = json.loads((ROOT / structure / "config.json").read_text())["architectures"][0]
    cls = Gemma4ForConditionalGeneration if arch == "Gemma4ForConditionalGeneration" else Gemma4ForCausalLM
    eager = cls.from_pretrained(ROOT / structure, dtype=torch.bfloat16, attn_implementation="eager")
    eager_logits, _, _ = run(eager, case)
    mask = torch.tensor(case.get("attention_mask", [[1] * sdpa_logits.shape[1]] * sdpa_logits.shape[0])).bool()
    for b in range(mask.shape[0]):
        last = int(mask[b].nonzero().max())
        a, c = sdpa_logits[b, last].double(), eager_logits[b, last].double()
        cos = float(a @ c / (a.norm() * c.norm()))
        if cos < 0.999:
            raise SystemExit(f"{structure}/{case_name}: ill-conditioned in bf16 (eager vs SDPA last-token cosine "
                             f"{cos:.6f} in row {b}); choose another input")


def main():
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "goldens"
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    for structure in STRUCTURES:
        for dtype_name, dtype in DTYPES.items():
            model = load(structure, dtype)
            for case_name, case in cases(structure).items():
                logits, hidden, routing = run(model, case)
                if dtype_name == "bf16":
                    check_well_conditioned(structure, case_name, case, logits)
                B, S = logits.shape[:2]
                tensors = {"logits": logits.contiguous(), "input_ids": torch.tensor(case["input_ids"])}
                tensors["attention_mask"] = torch.tensor(case.get("attention_mask", [[1] * S] * B))
                if "mm_token_type_ids" in case:
                    tensors["mm_token_type_ids"] = torch.tensor(case["mm_token_type_ids"])
                for i, h in enumerate(hidden):
                    tensors[f"hidden.{i}"] = h.reshape(B, S, -1).contiguous()
                for layer, (experts, weights, probs) in routing.items():
                    tensors[f"routing.{layer}.experts"] = experts.to(torch.int64).contiguous()
                    tensors[f"routing.{layer}.weights"] = weights.contiguous()
                    # All router probabilities, so a comparison can tell an exact tie (where transformers'
                    # top-k choice is arbitrary) from a real disagreement.
                    tensors[f"routing.{layer}.probs"] = probs.contiguous()
                meta = {"structure": structure, "case": case_name, "dtype": dtype_name, **versions}
                save_file(tensors, out_dir / f"{structure}.{case_name}.{dtype_name}.safetensors", metadata=meta)
    for case_name, case in {"plain": PLAIN, "padded": PADDED, "vision": VISION}.items():
        (out_dir / f"input-{case_name}.json").write_text(json.dumps(case) + "\n")


if __name__ == "__main__":
    main()
