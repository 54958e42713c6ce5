#!/usr/bin/env python3
"""Compares g4convert's reference forward with HF transformers on the tiny checkpoints, for every
(structure, input, dtype) in testdata/goldens, and prints the docs/parity.md table.

Transformers' side is computed live (testdata/gen/make_goldens.py's code) unless --goldens is given, in
which case the committed golden files are used. Metrics over real (non-padding) positions:
  max|dlogit| / max|logit|, the minimum per-layer cosine of the residual stream (flattened over real tokens),
  the cosine of the logits at each row's last real token, top-1 agreement at every real position, and
  router top-k agreement (same expert set per real token).

Usage:  $(bin/pyenv)/bin/python python/parity.py [--goldens] [--markdown]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "testdata" / "gen"))
import make_goldens  # noqa: E402

G4 = os.environ.get("G4CONVERT", str(ROOT / "build" / "g4convert"))

THRESHOLDS = {
    "fp32": {"rel_logit": 1e-4, "layer_cos": 0.999999},
    "bf16": {"last_cos": 0.999},
}


def cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def run_ours(structure, case_name, dtype, tmp):
    inp = ROOT / "testdata" / "goldens" / f"input-{case_name}.json"
    logits, hidden, routing = (tmp / "logits.safetensors", tmp / "hidden.safetensors", tmp / "routing.json")
    subprocess.run([G4, "forward", "--hf", ROOT / "testdata" / structure, "--input", inp, "--dtype", dtype, "--quiet",
                    "--logits", logits, "--hidden", hidden, "--routing", routing], check=True)
    ours = load_file(logits)
    ours.update(load_file(hidden))
    return ours, json.loads(routing.read_text())


def theirs_live(structure, case_name, dtype):
    model = make_goldens.load(structure, make_goldens.DTYPES[dtype])
    case = make_goldens.cases(structure)[case_name]
    logits, hidden, routing = make_goldens.run(model, case)
    B, S = logits.shape[:2]
    out = {"logits": logits, "attention_mask": torch.tensor(case.get("attention_mask", [[1] * S] * B))}
    for i, h in enumerate(hidden):
        out[f"hidden.{i}"] = h.reshape(B, S, -1)
    for layer, (experts, weights, probs) in routing.items():
        out[f"routing.{layer}.experts"] = experts
        out[f"routing.{layer}.probs"] = probs
    return out


# bf16 runs of transformers on two CPUs (AVX-512 and AVX2 kernels) differ by up to ~2e-2 of a tensor's largest
# value before any routing differs. A top-k choice whose probabilities sit closer than that (relative to the
# token's largest probability) may flip between them, and a flip changes that token's output by order 1 from
# then on, and, through attention, every later token of its row. fp32 noise (~1e-6) flips only exact ties.
ROUTER_NEAR_TIE = {"fp32": 0.0, "bf16": 2e-2}


def routing_agrees(theirs_experts, theirs_probs, ours_experts, tolerance=0.0):
    """Same expert set, or a set that differs only among experts tied at the k-th probability to within
    `tolerance` of the largest (e.g. an all-zero router input gives uniform probabilities and transformers'
    top-k pick is arbitrary)."""
    if set(theirs_experts.tolist()) == set(ours_experts.tolist()):
        return True
    kth = theirs_probs[theirs_experts].min()
    return bool((theirs_probs[ours_experts] >= kth - tolerance * theirs_probs.max()).all())


def bf16_ulp(x):
    """The spacing of bf16 numbers at |x| (8 significant bits)."""
    x = x.double().abs().clamp_min(1e-30)
    return torch.exp2(torch.floor(torch.log2(x)) - 7)


def perturbed_tokens(mask, flipped):
    """Real positions (flattened B*S) at or after a near-tie routing flip in their row."""
    B, S = mask.shape
    out = torch.zeros(B * S, dtype=torch.bool)
    for t in flipped:
        b = t // S
        out[t:(b + 1) * S] = True
    return out & mask.flatten().bool()


def near_tie_flips(mask, routing_pairs, tolerance):
    """(agree, total, flipped): per real token and MoE layer, whether the expert sets agree (exact ties allowed),
    and the tokens whose sets differ only within `tolerance`. routing_pairs: (experts_a, probs_a, experts_b) per
    layer, each [B*S, ...]."""
    real = mask.flatten()
    agree, total, flipped = 0, 0, []
    for experts_a, probs_a, experts_b in routing_pairs:
        for t in real.nonzero().flatten().tolist():
            total += 1
            if routing_agrees(experts_a[t], probs_a[t], experts_b[t]):
                agree += 1
            elif routing_agrees(experts_a[t], probs_a[t], experts_b[t], tolerance):
                agree += 1
                flipped.append(t)
    return agree, total, flipped


def compare(structure, case_name, dtype, theirs, ours, our_routing):
    mask = theirs["attention_mask"].bool()
    B, S = mask.shape
    real = mask.flatten()
    pairs = [(theirs[f"routing.{e['layer']}.experts"].reshape(B * S, -1), theirs[f"routing.{e['layer']}.probs"].reshape(B * S, -1),
              torch.tensor(e["experts"]).reshape(B * S, -1)) for e in our_routing["layers"]]
    agree, total, flipped = near_tie_flips(mask, pairs, ROUTER_NEAR_TIE[dtype])
    # Metrics over the real positions no near-tie flip reaches (all of them unless a flip happened).
    kept = real & ~perturbed_tokens(mask, flipped)
    t_logits = theirs["logits"].reshape(B * S, -1)[kept]
    o_logits = ours["logits"].reshape(B * S, -1)[kept]
    rel = float((t_logits - o_logits).abs().max() / t_logits.abs().max())
    layer_cos = [cosine(theirs[k].reshape(B * S, -1)[kept], ours[k].reshape(B * S, -1)[kept])
                 for k in sorted((k for k in theirs if k.startswith("hidden.")), key=lambda k: int(k.split(".")[1]))]
    last = [int(mask[b].nonzero().max()) for b in range(B)]
    last_cos = min([cosine(theirs["logits"][b, last[b]], ours["logits"][b, last[b]]) for b in range(B) if kept[b * S + last[b]]],
                   default=1.0)
    # Top-1 agrees when our choice is a maximum of theirs; in bf16, within one bf16 step of it (transformers' own
    # logits on two CPUs swap such near-ties).
    theirs_max = t_logits.max(-1).values.double()
    ours_pick = t_logits.gather(-1, o_logits.argmax(-1, keepdim=True)).squeeze(-1).double()
    slack = bf16_ulp(theirs_max) if dtype == "bf16" else torch.zeros_like(theirs_max)
    top1 = float(((theirs_max - ours_pick) <= slack).float().mean())
    row = {"structure": structure, "input": case_name, "dtype": dtype, "rel_logit": rel, "min_layer_cos": min(layer_cos),
           "last_cos": last_cos, "top1": top1, "router": (agree, total), "near_tie_flips": len(flipped),
           "tokens_compared": int(kept.sum())}
    th = THRESHOLDS[dtype]
    if dtype == "fp32":
        row["pass"] = rel <= th["rel_logit"] and min(layer_cos) >= th["layer_cos"] and agree == total
    else:
        row["pass"] = top1 == 1.0 and last_cos >= th["last_cos"] and agree == total and int(kept.sum()) > 0
    return row


def all_rows(use_goldens):
    rows = []
    for structure in make_goldens.STRUCTURES:
        for dtype in make_goldens.DTYPES:
            for case_name in make_goldens.cases(structure):
                if use_goldens:
                    theirs = load_file(ROOT / "testdata" / "goldens" / f"{structure}.{case_name}.{dtype}.safetensors")
                else:
                    theirs = theirs_live(structure, case_name, dtype)
                with tempfile.TemporaryDirectory() as tmp:
                    ours, routing = run_ours(structure, case_name, dtype, pathlib.Path(tmp))
                rows.append(compare(structure, case_name, dtype, theirs, ours, routing))
    return rows


def markdown(rows):
    lines = ["| structure | input | dtype | max\\|Δlogit\\| / max\\|logit\\| | min layer cosine | last-token logit cosine | top-1 agreement | router top-k agreement | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree, total = r["router"]
        router = f"{agree}/{total}" if total else "–"
        lines.append(f"| {r['structure']} | {r['input']} | {r['dtype']} | {r['rel_logit']:.2e} | {r['min_layer_cos']:.9f} | "
                     f"{r['last_cos']:.7f} | {r['top1']*100:.0f}% | {router} | {'yes' if r['pass'] else 'NO'} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--goldens", action="store_true", help="compare with the committed goldens instead of live transformers")
    args = ap.parse_args()
    rows = all_rows(args.goldens)
    print(markdown(rows))
    sys.exit(0 if all(r["pass"] for r in rows) else 1)


if __name__ == "__main__":
    main()
