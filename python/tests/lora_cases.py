"""The LoRA oracle suite's cases and its own statement of the maths (lora-peft.md A.3), independent of g4convert:
Megatron-Bridge adapter checkpoints written by lora_save.py (megatron-core's ShardedTensors) over our hf2mcore
bases, the PEFT tensors they must export to (QKV de-interleaved per KV group, fc1 split into gate and up, routed
experts packed rank-major as PEFT's ParamWrapper reads them) and the merged HF weights W + s·B·A in float64."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from conftest import TESTDATA, mcore_tree, run_g4

HERE = os.path.dirname(os.path.abspath(__file__))
NO_PROJ = ["linear_qkv", "linear_fc1", "linear_fc2"]  # 26B: linear_proj adapters sit after the post-norm (A.2)

# structure -> HF source: a testdata checkpoint (bf16) or a synth preset, form and dtype
STRUCTURES = {"e2b": "tiny-e2b", "e4b": "tiny-e4b", "31b": "tiny-31b", "26b": "tiny-26b-a4b",
              "e4b-vla": "tiny-e4b-vla", "26b-vl": "tiny-26b-a4b-vl",
              "e2b-fp32": ("tiny-e2b", "causal", "fp32"), "e4b-fp32": ("tiny-e4b", "conditional", "fp32"),
              "31b-causal-fp32": ("tiny-31b", "causal", "fp32"), "26b-causal-fp32": ("tiny-26b-a4b", "causal", "fp32"),
              "26b-fp32": ("tiny-26b-a4b", "conditional", "fp32"),
              # testdata checkpoints widened to fp32 (the causal ones: the text model alone, as Gemma4ForCausalLM)
              "26b-cast-fp32": ("tiny-26b-a4b", "cast"), "26b-causal-cast-fp32": ("tiny-26b-a4b", "cast-causal"),
              "31b-causal-cast-fp32": ("tiny-31b", "cast-causal")}


def widened(src, out, causal):
    """`src` with every floating tensor in fp32; `causal`: its text model as a Gemma4ForCausalLM checkpoint (the
    language model's tensors under model., the text config at the top, no towers)."""
    from safetensors.torch import save_file
    cfg = json.loads((src / "config.json").read_text())
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in load_tensors(src).items()}
    if causal:
        tensors = {"model." + k[len("model.language_model."):]: v for k, v in tensors.items()
                   if k.startswith("model.language_model.")}
        cfg = {**cfg["text_config"], "architectures": ["Gemma4ForCausalLM"], "use_bidirectional_attention": None}
    cfg["dtype"] = "float32"
    out.mkdir()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def targets(structure):
    return NO_PROJ if structure.startswith("26b") else ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]


def _cases():
    c = {}
    for s in ("e2b", "e4b", "31b", "26b", "e4b-vla", "26b-vl"):
        for tp in (1, 2):
            c[f"{s}-tp{tp}"] = dict(structure=s, tp=tp, targets=targets(s), seed=1)
    c["31b-params-to-save"] = dict(structure="31b", seed=1, params_to_save=True)  # same adapter as 31b-tp1
    c["26b-mcore-0.19-tp2"] = dict(structure="26b", tp=2, targets=NO_PROJ, seed=1, mcore="0.19.2")  # as 26b-tp1
    c["26b-legacy"] = dict(structure="26b", experts="legacy", targets=NO_PROJ, seed=1)  # same values as 26b-tp1
    c["26b-per-expert"] = dict(structure="26b", experts="per-expert", targets=NO_PROJ, seed=2)
    c["26b-vl-per-expert-tp2"] = dict(structure="26b-vl", tp=2, experts="per-expert", targets=NO_PROJ, seed=3)
    for s in ("e2b-fp32", "e4b-fp32", "31b-causal-fp32", "26b-causal-fp32"):
        c[s] = dict(structure=s, dtype="fp32", targets=targets(s), seed=4)
    c["26b-fp32-per-expert"] = dict(structure="26b-fp32", dtype="fp32", experts="per-expert", targets=NO_PROJ, seed=5)
    for s in ("26b-cast-fp32", "26b-causal-cast-fp32", "31b-causal-cast-fp32"):
        c[s] = dict(structure=s, dtype="fp32", targets=targets(s), seed=4)
    c["26b-cast-fp32-per-expert"] = dict(structure="26b-cast-fp32", dtype="fp32", experts="per-expert", targets=NO_PROJ,
                                         seed=5)
    c["31b-full"] = dict(structure="31b", form="full", seed=6)
    c["26b-full"] = dict(structure="26b", form="full", targets=NO_PROJ, seed=6)
    c["31b-vlmlora"] = dict(structure="31b", peft_target="megatron.bridge.peft.lora.VLMLoRA", seed=7,
                            lora_dtype="torch.bfloat16")
    # refusals
    c["31b-dora"] = dict(structure="31b", peft_target="megatron.bridge.peft.dora.DoRA", seed=8)
    c["26b-shared-outer"] = dict(structure="26b", experts="shared-outer", targets=NO_PROJ, seed=8)
    c["26b-proj"] = dict(structure="26b", seed=8)  # MB's default targets: linear_proj included
    c["31b-nonzero-v"] = dict(structure="31b", nonzero_unused_rows=True, seed=9)
    c["e4b-nonzero-kv"] = dict(structure="e4b", nonzero_unused_rows=True, seed=9)
    return c


CASES = _cases()


class Lora:
    """Builds the HF sources, the hf2mcore bases and (in one lora_save.py run) every adapter checkpoint."""

    def __init__(self, root):
        self.root = root
        self._hf, self._base = {}, {}
        self._written = False

    def hf(self, structure):
        if structure not in self._hf:
            src = STRUCTURES[structure]
            if isinstance(src, str):
                self._hf[structure] = TESTDATA / src
            elif src[1].startswith("cast"):
                self._hf[structure] = widened(TESTDATA / src[0], self.root / f"hf-{structure}", src[1] == "cast-causal")
            else:
                preset, form, dtype = src
                out = self.root / f"hf-{structure}"
                run_g4("synth", "--preset", preset, "--form", form, "--dtype", dtype, "--out", out, "-q")
                self._hf[structure] = out
        return self._hf[structure]

    def base(self, structure):
        if structure not in self._base:
            out = self.root / f"base-{structure}"
            run_g4("hf2mcore", "--hf", self.hf(structure), "--out", out, "-q")
            self._base[structure] = out
        return self._base[structure]

    def _write_all(self):
        todo = {}
        for name, c in CASES.items():
            # MB's run_config.yaml lists the trainable parameters (PEFT.params_to_save, a !!set); only the case
            # that tests reading it writes the field, so that the other cases test the rest
            c = {"params_to_save": False, **{k: v for k, v in c.items() if k not in ("structure", "mcore")}}
            todo.setdefault(CASES[name].get("mcore", "0.16.1"), []).append(dict(
                hf=str(self.hf(CASES[name]["structure"])), base=str(self.base(CASES[name]["structure"])),
                out=str(self.root / name), reference=str(self.root / f"{name}.reference.safetensors"), **c))
        for version, cases in todo.items():  # one lora_save.py run per megatron-core version
            env = dict(os.environ)
            tree = mcore_tree(version)
            if tree:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
            (self.root / f"cases-{version}.json").write_text(json.dumps(cases))
            proc = subprocess.run([sys.executable, os.path.join(HERE, "lora_save.py"), str(self.root / f"cases-{version}.json")],
                                  cwd=HERE, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-3000:]
        self._written = True

    def adapter(self, name):
        """(adapter checkpoint root, its structure's HF dir, the generator's global adapter tensors)."""
        if not self._written:
            self._write_all()
        return self.root / name, self.hf(CASES[name]["structure"]), load_tensors(self.root / f"{name}.reference.safetensors")

    def export(self, name, *flags):
        out = self.root / f"export-{name}{''.join(flags)}"
        if not out.exists():
            ckpt, hf, _ = self.adapter(name)
            run_g4("lora-export", "--adapter", ckpt, "--out", out, "--reference-hf", hf, "-q", *flags)
        return out

    def merge(self, name, base=None):
        out = self.root / f"merge-{name}-{'mcore' if base == 'mcore' else 'hf'}"
        if not out.exists():
            ckpt, hf, _ = self.adapter(name)
            b = self.base(CASES[name]["structure"]) if base == "mcore" else hf
            run_g4("lora-merge", "--adapter", ckpt, "--base", b, "--out", out, "-q")
        return out


_SESSION = {}  # the test modules each import the fixture: one Lora (one generator run) for the whole session


@pytest.fixture(scope="session")
def lora(tmp_path_factory):
    if "lora" not in _SESSION:
        _SESSION["lora"] = Lora(tmp_path_factory.mktemp("lora"))
    return _SESSION["lora"]


def load_tensors(path):
    out = {}
    files = [path] if str(path).endswith(".safetensors") else sorted(p for p in path.glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), "pt") as s:
            for k in s.keys():
                out[k] = s.get_tensor(k)
    return out


def geometry(hf_dir):
    """The layers' attention geometry from transformers' config (not from g4convert or lora_save.py)."""
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(hf_dir)
    tc = getattr(cfg, "text_config", cfg)
    layers = [{"full": t == "full_attention", "hd": tc.per_layer_config[i].head_dim,
               "ng": tc.per_layer_config[i].num_key_value_heads} for i, t in enumerate(tc.layer_types)]
    return hasattr(cfg, "text_config"), tc, layers


def megatron_adapter(ref, mp, layers, l, module):
    """(A, B) of layer l's `module` (e.g. "self_attention.linear_qkv") from the generator's global tensors: per-layer
    keys, or the per-type attention stack / the layer stack at the layer's index; None when not targeted."""
    full = layers[l]["full"]
    typed = module.replace("self_attention.", "self_attention_global." if full else "self_attention_sliding.")
    per_layer = f"{mp}decoder.layers.{l}.{typed}.adapter.linear_in.weight"
    if per_layer in ref:
        return ref[per_layer], ref[per_layer.replace("linear_in", "linear_out")]
    key = f"{mp}decoder.layers.{typed}.adapter.linear_in.weight"
    if key not in ref:
        return None
    idx = sum(1 for j in range(l) if layers[j]["full"] == full) if module.startswith("self_attention.") else l
    return ref[key][idx], ref[key.replace("linear_in", "linear_out")][idx]


def expected_pairs(ref, hf_dir, hf_modules):
    """The HF LoRA pairs the adapter means, in float32: {HF module path: (A [r, in], B [out, r])} for the linears
    (only those transformers' model has: `hf_modules`), {HF experts path: (A1, B1, A2, B2) per expert [E, ...]}."""
    conditional, tc, layers = geometry(hf_dir)
    mp, hp = ("language_model.", "model.language_model.") if conditional else ("", "model.")
    nq, moe = tc.num_attention_heads, bool(getattr(tc, "enable_moe_block", False))
    linear, experts = {}, {}
    for l, g in enumerate(layers):
        p = f"{hp}layers.{l}."
        qkv = megatron_adapter(ref, mp, layers, l, "self_attention.linear_qkv")
        if qkv is not None:
            a, b = qkv[0].float(), qkv[1].float()
            hd, ng = g["hd"], g["ng"]
            per_group = b.reshape(ng, (nq // ng + 2) * hd, -1)  # [q_g; k_g; v_g] for each KV group g
            q = per_group[:, :nq // ng * hd].reshape(-1, b.shape[1])
            k = per_group[:, nq // ng * hd:nq // ng * hd + hd].reshape(-1, b.shape[1])
            v = per_group[:, nq // ng * hd + hd:].reshape(-1, b.shape[1])
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                linear[f"{p}self_attn.{name}"] = (a, part)
        proj = megatron_adapter(ref, mp, layers, l, "self_attention.linear_proj")
        if proj is not None:
            linear[f"{p}self_attn.o_proj"] = (proj[0].float(), proj[1].float())
        mlp = "mlp.shared_experts." if moe else "mlp."
        fc1 = megatron_adapter(ref, mp, layers, l, mlp + "linear_fc1")
        if fc1 is not None:
            a, b = fc1[0].float(), fc1[1].float()
            half = b.shape[0] // 2
            linear[f"{p}mlp.gate_proj"], linear[f"{p}mlp.up_proj"] = (a, b[:half]), (a, b[half:])
        fc2 = megatron_adapter(ref, mp, layers, l, mlp + "linear_fc2")
        if fc2 is not None:
            linear[f"{p}mlp.down_proj"] = (fc2[0].float(), fc2[1].float())
        if moe:
            e1 = megatron_adapter(ref, mp, layers, l, "mlp.experts.experts.linear_fc1")
            e2 = megatron_adapter(ref, mp, layers, l, "mlp.experts.experts.linear_fc2")
            if e1 is not None:
                E = tc.num_experts
                per_expert = [t.float() if t.dim() == 3 else t.float().expand(E, *t.shape) for t in (*e1, *e2)]  # legacy: 2-D
                experts[f"{p}experts"] = tuple(per_expert)
    linear = {k: v for k, v in linear.items() if k in hf_modules}
    return linear, experts


def expected_peft_state(linear, experts):
    """The PEFT adapter_model.safetensors these pairs make: 2-D lora_A/lora_B, and the experts packed as PEFT's
    ParamWrapper reads them: lora_A row e·r+k = A_e[k, :], lora_B column k·E+e = B_e[:, k]; gate_up_proj (wrapped
    first, inner) under experts.base_layer., down_proj under experts."""
    out = {}
    for path, (a, b) in linear.items():
        out[f"base_model.model.{path}.lora_A.weight"] = a
        out[f"base_model.model.{path}.lora_B.weight"] = b
    for path, (a1, b1, a2, b2) in experts.items():
        for prefix, a, b in ((f"{path}.base_layer", a1, b1), (path, a2, b2)):
            E, r = a.shape[0], a.shape[1]
            out[f"base_model.model.{prefix}.lora_A.weight"] = a.reshape(E * r, a.shape[2])
            out[f"base_model.model.{prefix}.lora_B.weight"] = b.permute(1, 2, 0).reshape(b.shape[1], r * E)
    return {k: v.clone().contiguous() for k, v in out.items()}  # q/k/v share A: separate tensors for safetensors


def expected_deltas(linear, experts, s):
    """HF tensor name -> s·B·A in float64 (per expert for the routed experts)."""
    out = {path + ".weight": s * (b.double() @ a.double()) for path, (a, b) in linear.items()}
    for path, (a1, b1, a2, b2) in experts.items():
        out[f"{path}.gate_up_proj"] = s * torch.bmm(b1.double(), a1.double())
        out[f"{path}.down_proj"] = s * torch.bmm(b2.double(), a2.double())
    return out


def expected_merge(hf, linear, experts, s):
    """Every HF tensor after the merge: W + s·B·A in float64, rounded once to W's dtype; the rest unchanged."""
    out = dict(hf)
    for name, delta in expected_deltas(linear, experts, s).items():
        out[name] = (hf[name].double() + delta).to(hf[name].dtype)
    return out


def hf_linear_modules(hf_dir):
    """The language-model linear module paths transformers' model of `hf_dir` has (k/v absent on KV-shared
    layers, v absent on K=V layers), read from an instantiated model on the meta device."""
    from transformers import AutoConfig, Gemma4ForCausalLM, Gemma4ForConditionalGeneration
    cfg = AutoConfig.from_pretrained(hf_dir)
    cls = Gemma4ForConditionalGeneration if hasattr(cfg, "text_config") else Gemma4ForCausalLM
    with torch.device("meta"):
        model = cls(cfg)
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def bf16_ulp(x):
    """The spacing of bf16 numbers at |x| (8 significant bits), the smallest normal's below it."""
    return torch.exp2(torch.floor(torch.log2(x.float().abs().clamp_min(2.0 ** -126))) - 7)


def assert_close_to(ours, want, what, rounded_delta=None):
    """fp32: max |difference| ≤ 1e-6 of the tensor's largest magnitude; bf16: within 1 ulp element-wise, plus half
    an ulp of `rounded_delta` where the other side rounded the delta to bf16 before adding it (PEFT's expert merge:
    that rounding is not bounded by W's ulp where W and the delta nearly cancel)."""
    assert ours.dtype == want.dtype and ours.shape == want.shape, f"{what}: {ours.dtype}{list(ours.shape)} vs {want.dtype}{list(want.shape)}"
    if want.dtype == torch.float32:
        rel = float((ours.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30))
        assert rel <= 1e-6, f"{what}: relative difference {rel:.3g}"
    elif want.dtype == torch.bfloat16:
        a, b = ours.float(), want.float()
        tol = bf16_ulp(torch.maximum(a.abs(), b.abs()))
        if rounded_delta is not None:
            tol = tol + bf16_ulp(rounded_delta) / 2
        bad = (a - b).abs() > tol
        assert not bad.any(), f"{what}: {int(bad.sum())} elements differ by more than the bound (max {float((a - b).abs().max()):.3g})"
    else:
        assert torch.equal(ours, want), what
