#!/usr/bin/env python3
"""bench/gpu_check.sh's parity and timing step: `g4convert forward --device DEVICE` against transformers on the same
device, and against g4convert's own CPU backend, in fp32 and bf16.

For every model (the tiny checkpoints in testdata/, then synth'd realistic sizes, each made, used and deleted in
turn), per dtype:
  - g4convert forward --device DEVICE --logits, and --device cpu (whole process timed; "forward" is its --json
    seconds: the forward with the weights streamed from disk to the device inside it);
  - transformers, loaded on DEVICE with its default SDPA attention (the path our bf16 roundings follow, as the
    goldens do): from_pretrained plus the first forward (timed, in this process: python/torch import and device
    initialisation are excluded, reported once), then a second forward alone; then its eager attention path, timed
    too, whose distance from SDPA is transformers' own noise floor;
  - the logits compared over real positions: max|Δ| / max|logit|, cosine, last-token cosine, top-1 agreement.
Gates (cuda-forward.md B.3, docs/parity.md): vs transformers fp32: max|Δ| <= 1e-4·max|logit| and top-1 everywhere;
bf16: top-1 everywhere (within one bf16 step of transformers' maximum) and last-token cosine >= 0.999 (reported,
not gated, where transformers' eager and SDPA paths give a last-token cosine below 0.999: make_goldens.py's test of
an ill-conditioned input); DEVICE vs CPU fp32: max|Δ| <= 1e-5·max|logit|,
bf16 as vs transformers; two processes on DEVICE: bitwise-equal logits. Rows of synth'd realistic-size models are
reported, not gated (their random weights amplify rounding differences layer over layer; see the report's legend).

Writes MARKDOWN (rewritten after every model, so a kill leaves what finished) and JSON (all raw rows).
Exit: 0 all ran and passed, 1 a gate failed, 3 nothing failed but something did not run (listed).
"""
import argparse
import gc
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time

import numpy as np

T_IMPORT = time.perf_counter()
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "bf16")


class OutOfTime(Exception):
    pass


class Budget:
    def __init__(self, deadline):
        self.deadline = deadline

    def left(self):
        return self.deadline - time.time()

    def timeout(self, cap):
        t = min(cap, self.left() - 5)
        if t <= 0:
            raise OutOfTime("time budget spent")
        return t


class G4:
    """Runs the g4convert binary with its own library path (never this process's: torch needs its own libstdc++)."""

    def __init__(self, binary, ld_path, budget):
        self.binary, self.budget = binary, budget
        self.env = dict(os.environ, LD_LIBRARY_PATH=ld_path)

    def run(self, args, cap):
        start = time.perf_counter()
        p = subprocess.run([self.binary, *map(str, args)], env=self.env, capture_output=True, text=True,
                           timeout=self.budget.timeout(cap))
        wall = time.perf_counter() - start
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"g4convert {args[0]} exited {p.returncode}: {tail}")
        return wall, p.stdout

    def forward(self, model, inp, dtype, device, logits_file, cap):
        """-> (logits [B,S,V], {layer: experts [B*S,K]}, whole-run seconds, forward seconds)"""
        routing_file = logits_file.with_suffix(".routing.json")
        wall, out = self.run(["forward", "--hf", model, "--input", inp, "--dtype", dtype, "--device", device,
                              "--logits", logits_file, "--routing", routing_file, "--force", "--json", "--quiet"], cap)
        routing = json.loads(routing_file.read_text())
        experts = {e["layer"]: np.asarray(e["experts"]).reshape(routing["batch"] * routing["seq"], -1) for e in routing["layers"]}
        return load_file(str(logits_file))["logits"], experts, wall, float(json.loads(out)["seconds"])


# --- comparison


def bf16_step(x):
    """The spacing of bf16 numbers at |x| (8 significant bits)."""
    return np.exp2(np.floor(np.log2(np.maximum(np.abs(x), 1e-30))) - 7)


def compare(ref, got, mask, dtype, kept=None):
    """ref, got: [B,S,V] logits; mask: [B,S] real positions; kept: [B*S] the real positions no near-tie routing
    flip reaches (all real ones by default)."""
    B, S, V = ref.shape
    real = mask.reshape(-1).astype(bool)
    kept = real if kept is None else kept & real
    if not kept.any():
        return {"rel": float("nan"), "cos": float("nan"), "last_cos": float("nan"), "top1": 0.0, "compared": 0}
    r = ref.reshape(B * S, V)[kept].astype(np.float64)
    g = got.reshape(B * S, V)[kept].astype(np.float64)

    def cos(a, b):
        return float(a.ravel() @ b.ravel() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))

    last = [int(np.nonzero(mask[b])[0].max()) for b in range(B)]
    ref_max = r.max(-1)
    our_pick = r[np.arange(len(r)), g.argmax(-1)]  # the reference's logit at our top-1
    slack = bf16_step(ref_max) if dtype == "bf16" else 0.0
    return {"rel": float(np.abs(r - g).max() / max(np.abs(r).max(), 1e-30)), "cos": cos(r, g),
            "last_cos": min((cos(ref[b, last[b]].astype(np.float64), got[b, last[b]].astype(np.float64))
                             for b in range(B) if kept[b * S + last[b]]), default=1.0),
            "top1": float(np.mean(ref_max - our_pick <= slack)), "compared": int(kept.sum())}


def routing_vs_transformers(parity, mask, theirs, ours, dtype):
    """docs/parity.md's rule (python/parity.py): the same expert sets, exact ties allowed, and in bf16 a choice
    within ROUTER_NEAR_TIE of a tie too, whose positions onwards are left out. -> (agree, total, kept [B*S])"""
    m = torch.from_numpy(np.asarray(mask)).bool()
    pairs = [(torch.from_numpy(theirs[layer][0]), torch.from_numpy(theirs[layer][1]), torch.from_numpy(ours[layer]))
             for layer in sorted(ours) if layer in theirs]
    agree, total, flipped = parity.near_tie_flips(m, pairs, parity.ROUTER_NEAR_TIE[dtype])
    total += sum(int(m.sum()) for layer in ours if layer not in theirs)  # a layer transformers did not route: all disagree
    return agree, total, (~parity.perturbed_tokens(m, flipped)).numpy()


def routing_vs_cpu(mask, cpu, dev):
    """Our two backends: expert sets per real token and MoE layer; positions from a differing token onwards (in its
    row) are left out. -> (agree, total, kept [B*S])"""
    B, S = np.asarray(mask).shape
    real = np.asarray(mask).reshape(-1).astype(bool)
    kept = np.ones(B * S, dtype=bool)
    agree = total = 0
    for layer in cpu:
        for t in np.nonzero(real)[0]:
            total += 1
            if set(cpu[layer][t].tolist()) == set(dev[layer][t].tolist()):
                agree += 1
            else:
                kept[t:(t // S + 1) * S] = False
    return agree, total, kept


def judge(m, dtype, against, noise=None):
    if m["compared"] == 0:
        return False
    if dtype == "fp32" and m["router"][0] != m["router"][1]:
        return False  # fp32 noise flips only exact ties, which both rules above already accept
    if against == "cpu" and dtype == "fp32":
        return m["rel"] <= 1e-5
    if against == "transformers" and m["router"][0] != m["router"][1]:
        return False  # a routing difference that is no near tie
    if dtype == "fp32":
        return m["rel"] <= 1e-4 and m["top1"] == 1.0
    if m["top1"] == 1.0 and m["last_cos"] >= 0.999:
        return True
    # make_goldens.py's rule: a bf16 input is a fair test only where transformers agrees with itself (eager vs SDPA
    # last-token cosine >= 0.999); on an ill-conditioned one (random synth weights can be) the row is reported only.
    if noise is not None and noise["last_cos"] < 0.999:
        return "info"
    return False


# --- transformers


def hf_classes():
    """(causal, conditional) classes, or the reason transformers here cannot run Gemma 4."""
    try:
        import transformers
        from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration
        transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would fill the log
        return (Gemma4ForCausalLM, Gemma4ForConditionalGeneration), transformers.__version__
    except Exception as e:  # noqa: BLE001 — any import failure means "not available", reported
        import importlib.metadata as md
        try:
            version = md.version("transformers")
        except md.PackageNotFoundError:
            version = "not installed"
        return None, f"transformers {version} cannot load Gemma 4: {type(e).__name__}: {e}"


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def hf_forward(model, case, device):
    """-> (logits [B,S,V], {layer: (experts [B*S,K], probabilities [B*S,E])}) as make_goldens.py captures them"""
    text = model.model.language_model if hasattr(model.model, "language_model") else model.model
    routing, hooks = {}, []
    for idx, layer in enumerate(text.layers):
        if getattr(layer, "enable_moe_block", False):
            hooks.append(layer.router.register_forward_hook(lambda m, i, o, idx=idx: routing.__setitem__(
                idx, (o[2].detach().cpu().numpy(), o[0].detach().float().cpu().numpy()))))
    kw = {"input_ids": torch.tensor(case["input_ids"], device=device)}
    if "attention_mask" in case:
        kw["attention_mask"] = torch.tensor(case["attention_mask"], device=device)
    try:
        with torch.no_grad():
            logits = model(**kw, use_cache=False).logits
        sync(device)
    finally:
        for h in hooks:
            h.remove()
    return logits.float().cpu().numpy(), routing


def hf_load(classes, path, dtype, device):
    arch = json.loads((path / "config.json").read_text())["architectures"][0]
    cls = classes[1] if arch == "Gemma4ForConditionalGeneration" else classes[0]
    # transformers' default attention: SDPA where the module has it (naming "sdpa" outright fails for E4B's audio tower).
    kw = {"dtype": torch.bfloat16 if dtype == "bf16" else torch.float32}
    try:
        model = cls.from_pretrained(path, device_map=device, **kw)
    except (ValueError, ImportError, TypeError):  # no device_map support here: load, then move
        model = cls.from_pretrained(path, **kw).to(device)
    return model.eval()


def hf_run(classes, path, dtype, device, cases, budget):
    """Per case: SDPA logits and routing, and eager's distance from them (the noise floor); the first case's timings."""
    if budget.left() < 10:
        raise OutOfTime("time budget spent")
    start = time.perf_counter()
    model = hf_load(classes, path, dtype, device)
    out, timing = {}, {}
    for i, (name, case) in enumerate(cases.items()):
        logits, routing = hf_forward(model, case, device)
        if i == 0:
            timing["load_forward"] = time.perf_counter() - start
            t0 = time.perf_counter()
            hf_forward(model, case, device)
            timing["forward"] = time.perf_counter() - t0
        out[name] = {"logits": logits, "routing": routing, "noise": None}
    try:
        model.set_attn_implementation("eager")
        for i, (name, case) in enumerate(cases.items()):
            eager, _ = hf_forward(model, case, device)
            out[name]["noise"] = compare(out[name]["logits"], eager, mask_of(case), dtype)
            if i == 0:
                t0 = time.perf_counter()
                hf_forward(model, case, device)
                timing["eager_forward"] = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 — the noise floor is a help, not a gate
        print(f"  (no eager path: {type(e).__name__}: {e})", flush=True)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out, timing


def mask_of(case):
    ids = np.asarray(case["input_ids"])
    return np.asarray(case.get("attention_mask", np.ones_like(ids)))


# --- the run


class Report:
    def __init__(self, args, device, hf_note, torch_note):
        self.args, self.device = args, device
        self.parity, self.determinism, self.timing, self.not_run, self.errors = [], [], [], [], []
        self.hf_note, self.torch_note = hf_note, torch_note

    def failed(self):
        return self.errors or any(r["pass"] is False for r in self.parity) or any(not d["equal"] for d in self.determinism)

    def write(self):
        d = self.device
        L = [f"## Parity: g4convert --device {d} against transformers (SDPA, on {d}) and against g4convert --device cpu", "",
             f"{self.hf_note}; {self.torch_note}.", "",
             "Over real positions. Gates: vs transformers fp32 max|Δ| <= 1e-4·max|logit| and top-1 everywhere; bf16 top-1 "
             "everywhere (within one bf16 step) and last-token cosine >= 0.999; vs cpu fp32 max|Δ| <= 1e-5·max|logit|, bf16 as vs transformers. Router top-k: "
             "the same expert sets (exact ties allowed); in bf16 a near tie (docs/parity.md) may flip, and the positions "
             "a flip reaches are left out (positions compared); vs cpu in bf16 any differing token's row is left out from "
             "it on; in fp32 every routing difference fails. 'info': a bf16 row reported, not gated: the input is ill-conditioned "
             "(transformers' own eager and SDPA paths give a last-token cosine below 0.999, the golden generator's test), or the "
             "checkpoint's inputs were never vetted (the golden generator vets tiny-e2b, tiny-e4b, tiny-26b-a4b, tiny-31b), or it is a "
             "synth'd realistic-size model: its random weights amplify rounding differences layer over layer (measured with "
             "our CPU backend against transformers on e2b --layers 8 in fp32: 4e-6 of max|hidden| after layer 1, growing 2-6× "
             "per layer to 4e-2 at the logits), so the tiny goldens' thresholds do not apply to it; its rows are for reading. "
             "Determinism is gated everywhere.", "",
             "| model | input | dtype | against | max\\|Δ\\| / max\\|logit\\| | cosine | last-token cosine | top-1 | router top-k | positions compared | transformers eager vs SDPA (last cos, top-1) | pass |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.parity:
            n = r.get("noise")
            noise = f"{n['last_cos']:.6f}, {n['top1']*100:.1f}%" if n else "–"
            router = f"{r['router'][0]}/{r['router'][1]}" if r["router"][1] else "–"
            L.append(f"| {r['model']} | {r['input']} | {r['dtype']} | {r['against']} | {r['rel']:.2e} | {r['cos']:.9f} | "
                     f"{r['last_cos']:.7f} | {r['top1']*100:.1f}% | {router} | {r['compared']} | {noise} | {'yes' if r['pass'] is True else r['pass'] if r['pass'] else 'NO'} |")
        L += ["", f"## Determinism: two g4convert --device {d} processes, bitwise-equal logits", ""]
        L += [f"- {x['model']} {x['input']} {x['dtype']}: {'equal' if x['equal'] else 'DIFFERENT'}" for x in self.determinism]
        L += ["", f"## Timing (the first input; g4convert {d}: the better of two runs where determinism ran twice; transformers "
              f"times exclude its import and device init: {self.torch_init:.1f} s)", "",
              f"| model | dtype | tokens | g4convert {d} whole run | g4convert {d} forward | g4convert cpu whole run | g4convert cpu forward | "
              f"transformers {d} load + first forward | transformers {d} forward alone (SDPA) | transformers {d} forward alone (eager) | "
              f"ratio (transformers load+forward / g4convert {d} whole) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]

        def s(v):
            return f"{v:.2f} s" if v is not None else "–"

        for t in self.timing:
            ratio = f"{t['hf_load_forward'] / t['dev_whole']:.2f}×" if t.get("hf_load_forward") else "–"
            L.append(f"| {t['model']} | {t['dtype']} | {t['tokens']} | {s(t['dev_whole'])} | {s(t['dev_forward'])} | {s(t.get('cpu_whole'))} | "
                     f"{s(t.get('cpu_forward'))} | {s(t.get('hf_load_forward'))} | {s(t.get('hf_forward'))} | {s(t.get('hf_eager_forward'))} | {ratio} |")
        L += self.extrapolated()
        L += ["", "## Not run", ""] + ([f"- {x}" for x in self.not_run] or ["- nothing"])
        L += ["", "## Errors", ""] + ([f"- {x}" for x in self.errors] or ["- none"])
        tmp = pathlib.Path(str(self.args.markdown) + ".tmp")
        tmp.write_text("\n".join(L) + "\n")
        tmp.replace(self.args.markdown)
        pathlib.Path(self.args.json).write_text(json.dumps(
            {"parity": self.parity, "determinism": self.determinism, "timing": self.timing, "not_run": self.not_run,
             "errors": self.errors, "transformers": self.hf_note, "torch": self.torch_note}, indent=1) + "\n")

    def extrapolated(self):
        """Full size = fixed + L × per-layer, from the --layers 4 and --layers 8 rows (as bench/forward.sh does)."""
        keys = [("dev_whole", f"g4convert {self.device} whole run"), ("dev_forward", f"g4convert {self.device} forward"),
                ("cpu_whole", "g4convert cpu whole run"), ("hf_load_forward", "transformers load + first forward"),
                ("hf_forward", "transformers forward alone (SDPA)"), ("hf_eager_forward", "transformers forward alone (eager)")]
        rows = []
        by = {(t.get("preset"), t.get("layers"), t["dtype"]): t for t in self.timing if t.get("preset")}
        for (preset, layers, dtype), t8 in sorted(by.items()):
            t4 = by.get((preset, 4, dtype))
            if layers != 8 or not t4:
                continue
            cells = []
            for k, _ in keys:
                if t4.get(k) is None or t8.get(k) is None:
                    cells.append("–")
                    continue
                per = (t8[k] - t4[k]) / 4
                fixed = t8[k] - 8 * per
                if per <= 0:  # timing noise larger than 4 layers' work: no extrapolation
                    cells.append(f"n/a (t4 {t4[k]:.2f} s >= t8 {t8[k]:.2f} s)")
                    continue
                cells.append(f"{fixed + t8['full_layers'] * per:.1f} s (fixed {fixed:.2f} + {t8['full_layers']} × {per:.3f})")
            rows.append(f"| {preset} ({t8['full_layers']} layers) | {dtype} | " + " | ".join(cells) + " |")
        if not rows:
            return []
        return ["", "## Full-size presets, EXTRAPOLATED (not measured)", "",
                "Full-size 26B-A4B and 31B checkpoints do not fit the GPU machine's 64 GiB disk and 8 minutes, so each is "
                "timed at --layers 4 and --layers 8 and extrapolated as fixed + L × per-layer, per-layer = (t8 - t4) / 4, "
                "fixed = t8 - 8 × per-layer (bench/forward.sh's rule).", "",
                "| preset | dtype | " + " | ".join(n for _, n in keys) + " |", "|---|---|" + "---|" * len(keys)] + rows


def tokens_case(n, vocab, seed=0):
    rng = random.Random(seed)
    return {"input_ids": [[2] + [rng.randrange(3, vocab) for _ in range(n - 1)]]}


def run_model(rep, g4, classes, m, work, budget):
    """m: name, path, cases {name: dict}, inputs {name: json path}, and for synth models preset, layers, full_layers."""
    args, device = rep.args, rep.device
    for dtype in DTYPES:
        ours = {}
        timing = {"model": m["name"], "dtype": dtype, "tokens": int(mask_of(next(iter(m["cases"].values()))).sum()),
                  "preset": m.get("preset"), "layers": m.get("layers"), "full_layers": m.get("full_layers"),
                  "dev_whole": None, "dev_forward": None}
        for i, (name, inp) in enumerate(m["inputs"].items()):
            f = work / f"logits-{device}.safetensors"
            logits, routing, wall, fwd = g4.forward(m["path"], inp, dtype, device, f, args.step_cap)
            ours[name] = {"dev": (logits, routing)}
            if i == 0:
                timing["dev_whole"], timing["dev_forward"] = wall, fwd
            if m["determinism"] and i == 0:
                again, _, wall, fwd = g4.forward(m["path"], inp, dtype, device, f, args.step_cap)
                rep.determinism.append({"model": m["name"], "input": name, "dtype": dtype,
                                        "equal": bool(again.tobytes() == logits.tobytes())})
                timing["dev_whole"], timing["dev_forward"] = min(timing["dev_whole"], wall), min(timing["dev_forward"], fwd)
            c = work / "logits-cpu.safetensors"
            try:
                cpu_logits, cpu_routing, cwall, cfwd = g4.forward(m["path"], inp, dtype, "cpu", c, args.step_cap)
                ours[name]["cpu"] = (cpu_logits, cpu_routing)
                if i == 0:
                    timing["cpu_whole"], timing["cpu_forward"] = cwall, cfwd
            except subprocess.TimeoutExpired:
                rep.not_run.append(f"{m['name']} {name} {dtype}: g4convert --device cpu past its time limit")
        theirs = None
        if classes:
            try:
                theirs, hf_t = hf_run(classes, m["path"], dtype, device, m["cases"], budget)
                timing["hf_load_forward"], timing["hf_forward"] = hf_t["load_forward"], hf_t["forward"]
                timing["hf_eager_forward"] = hf_t.get("eager_forward")
            except (OutOfTime, subprocess.TimeoutExpired):
                rep.not_run.append(f"{m['name']} {dtype}: transformers (time budget)")
            except Exception as e:  # noqa: BLE001 — transformers failing on a model is a finding, not a crash
                rep.errors.append(f"{m['name']} {dtype}: transformers failed: {type(e).__name__}: {str(e)[:300]}")
        for name, case in m["cases"].items():
            mask = mask_of(case)
            row = {"model": m["name"], "input": name, "dtype": dtype}
            dev_logits, dev_routing = ours[name]["dev"]
            if theirs:
                agree, total, kept = routing_vs_transformers(rep.parity_rules, mask, theirs[name]["routing"], dev_routing, dtype)
                met = {**compare(theirs[name]["logits"], dev_logits, mask, dtype, kept), "router": (agree, total)}
                noise = theirs[name]["noise"]
                ok = judge(met, dtype, "transformers", noise)
                if ok is False and ("synth" in m or (dtype == "bf16" and m["name"] in args.bf16_info.split(","))):
                    ok = "info"  # reported, not gated (the legend says why)
                rep.parity.append({**row, "against": "transformers", **met, "noise": noise, "pass": ok})
            if "cpu" in ours[name]:
                cpu_logits, cpu_routing = ours[name]["cpu"]
                agree, total, kept = routing_vs_cpu(mask, cpu_routing, dev_routing)
                met = {**compare(cpu_logits, dev_logits, mask, dtype, kept), "router": (agree, total)}
                ok = judge(met, dtype, "cpu")
                rep.parity.append({**row, "against": "cpu", **met, "noise": None, "pass": "info" if ok is False and "synth" in m else ok})
        rep.timing.append(timing)
        print(f"  {m['name']} {dtype}: done ({budget.left():.0f} s left)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--g4", required=True, help="the g4convert binary")
    ap.add_argument("--ld-path", default="", help="LD_LIBRARY_PATH for g4convert")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", default="", help="comma-separated testdata/ checkpoints")
    ap.add_argument("--bf16-info", default="", help="of those, the ones whose bf16 rows against transformers are reported "
                    "but not gated: checkpoints the golden generator never vetted as well-conditioned in bf16 on these inputs")
    ap.add_argument("--synth", default="", help="comma-separated PRESET:LAYERS to synth, in order")
    ap.add_argument("--tokens", type=int, default=128, help="tokens of the synth models' one-row input")
    ap.add_argument("--work", required=True, type=pathlib.Path)
    ap.add_argument("--budget", type=float, required=True, help="seconds from now for the whole step")
    ap.add_argument("--step-cap", type=float, default=150, help="most seconds one g4convert run may take")
    ap.add_argument("--synth-need", type=float, default=70, help="seconds left below which no further synth model starts")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    budget = Budget(time.time() + args.budget)
    device = args.device
    args.work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("gpu_parity: torch sees no CUDA device")
        torch.zeros(1, device="cuda")
        name = torch.cuda.get_device_name(0)
    else:
        name = f"cpu, {torch.get_num_threads()} torch threads"
    torch.set_float32_matmul_precision("highest")  # no TF32 in transformers' fp32 (B.3: the flags it ran under below)
    torch_note = (f"torch {torch.__version__} on {name}; matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                  f"float32_matmul_precision={torch.get_float32_matmul_precision()}, "
                  f"allow_bf16_reduced_precision_reduction={torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction}")
    classes, hf_note = hf_classes()
    if classes:
        hf_note = f"transformers {hf_note}"
    rep = Report(args, device, hf_note, torch_note)
    if classes:
        sys.path.insert(0, str(ROOT / "python"))
        import parity  # python/parity.py: the project's routing tie rules (imports transformers' Gemma 4 classes)
        rep.parity_rules = parity
    rep.torch_init = (t0 - T_IMPORT) + (time.perf_counter() - t0)
    print(f"gpu_parity: {hf_note}; {torch_note}", flush=True)
    if not classes:
        rep.not_run.append(f"every comparison with transformers: {hf_note}")
    g4 = G4(args.g4, args.ld_path, budget)

    inputs = {n: ROOT / "testdata" / "goldens" / f"input-{n}.json" for n in ("plain", "padded")}
    models = [{"name": t, "path": ROOT / "testdata" / t, "inputs": inputs, "determinism": True,
               "cases": {n: json.loads(p.read_text()) for n, p in inputs.items()}} for t in filter(None, args.tiny.split(","))]
    presets = {}
    if args.synth:
        _, out = g4.run(["presets", "--json"], 30)
        presets = {p["name"]: p for p in json.loads(out)}
    for spec in filter(None, args.synth.split(",")):
        preset, layers = spec.split(":")
        models.append({"name": f"{preset} --layers {layers}", "synth": (preset, int(layers)), "preset": preset, "layers": int(layers),
                       "full_layers": len(presets[preset]["layers"]), "determinism": spec == args.synth.split(",")[0]})

    for m in models:
        made = None
        try:
            if "synth" in m:
                if budget.left() < args.synth_need:
                    raise OutOfTime("time budget")
                preset, layers = m["synth"]
                made = args.work / f"synth-{preset}-{layers}"
                shutil.rmtree(made, ignore_errors=True)
                wall, _ = g4.run(["synth", "--preset", preset, "--layers", layers, "--out", made, "--quiet"], 120)
                print(f"  synth {m['name']}: {wall:.1f} s", flush=True)
                vocab = presets[preset]["config"]["vocab_size"]
                case = tokens_case(args.tokens, vocab)
                inp = args.work / f"ids-{args.tokens}.json"
                inp.write_text(json.dumps(case) + "\n")
                m.update(path=made, inputs={f"{args.tokens} tokens": inp}, cases={f"{args.tokens} tokens": case})
            run_model(rep, g4, classes, m, args.work, budget)
        except (OutOfTime, subprocess.TimeoutExpired) as e:
            rep.not_run.append(f"{m['name']} (or its rest): {'time budget' if isinstance(e, OutOfTime) else 'past its step limit'}")
        except Exception as e:  # noqa: BLE001 — one model's failure is recorded and the next one still runs
            rep.errors.append(f"{m['name']}: {type(e).__name__}: {str(e)[:400]}")
        finally:
            if made:
                shutil.rmtree(made, ignore_errors=True)
            rep.write()

    rep.write()
    bad = [f"{r['model']} {r['input']} {r['dtype']} vs {r['against']}" for r in rep.parity if r["pass"] is False]
    bad += [f"{x['model']} {x['input']} {x['dtype']}: two processes differ" for x in rep.determinism if not x["equal"]]
    for line in bad + rep.errors:
        print(f"gpu_parity: FAILED: {line}", flush=True)
    for line in rep.not_run:
        print(f"gpu_parity: not run: {line}", flush=True)
    print(f"gpu_parity: {len(rep.parity)} comparisons, {len(bad) + len(rep.errors)} failed, {len(rep.not_run)} not run", flush=True)
    sys.exit(1 if rep.failed() else 3 if rep.not_run else 0)


if __name__ == "__main__":
    main()
