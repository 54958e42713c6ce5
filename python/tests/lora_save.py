"""Writes Megatron-Bridge LoRA checkpoints with megatron-core's own ShardedTensors and dist_checkpointing.save, in
MB 0.6.2's layout (lora-peft.md A.1), for the LoRA oracle tests: random adapters for an HF checkpoint's
architecture, as a training run would have left them.

- Keys: `<module>.adapter.linear_in.weight` (A, [r, in]) and `.linear_out.weight` (B, [out, r]) next to the base
  module's keys, with the base's stacking: per-type attention stacks (self_attention_sliding / _global, indexed by
  the layer's rank within its type), per-layer keys for a heterogeneous (double-wide MLP) model.
- TP chunking as MB's ParallelLinearAdapter shards it, each TP rank's local tensor emulated in this one process:
  column-parallel base (linear_qkv, linear_fc1): A on the rank axis, B on rows; row-parallel base (linear_proj,
  linear_fc2): A on columns, B on rows; fc1 B through megatron-core's apply_swiglu_sharded_factory (each rank holds
  [gate_r; up_r], stored as a gate and an up chunk, so the global tensor is [gate; up]).
- Routed experts (`mlp.experts.experts.linear_fc{1,2}`): "shared" (MB's default: one adapter written to every
  global expert slot, [L, E, r, in]), "per-expert" (GroupedExpertLinearAdapter: [L, E, r, in], one chunk for the
  local experts), "legacy" (old shared layout without the E axis: [L, r, in]), "shared-outer" (SGLang's layout:
  fc1 A and fc2 B 2-D and shared, the rest per expert; experts_shared_outer_loras: true).
- B rows MB never trains are zero: the V slot of attention_k_eq_v layers, K and V of KV-shared layers.
- form "adapter": only the adapter tensors (MB's apply_peft_adapter_filter_to_state_dict), with run_config.yaml =
  the base checkpoint's own run_config.yaml + a `peft:` section serialised as MB's ConfigContainer.to_yaml writes
  the LoRA dataclass + checkpoint.pretrained_checkpoint; form "full": the base checkpoint's tensors too.
- `reference`: a safetensors file with every adapter's global tensor under its DCP key, for the tests' own maths.

Run as a script (megatron's saver may start worker processes that re-import __main__):
    python lora_save.py CASES.json        # a JSON list of cases, see Case below"""
import json
import os
import socket
import sys
import warnings


def case_defaults(c):
    """One case: hf (the HF checkpoint giving the architecture), base (our hf2mcore output root), out (the
    checkpoint root to write), and the options below."""
    return {"tp": 1, "rank": 4, "alpha": 8, "targets": ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"],
            "experts": "shared", "form": "adapter", "dtype": "bf16", "peft_target": "megatron.bridge.peft.lora.LoRA",
            "seed": 0, "iteration": 100, "reference": None, "lora_dtype": None, "nonzero_unused_rows": False,
            "params_to_save": True, **c}


def geometry(hf_dir):
    """Per layer: attention type, head dim, KV groups, KV-shared, K=V; the MLP widths, from transformers' config
    and the HF tensors' shapes (the double-wide MLP of KV-shared E2B layers)."""
    from safetensors import safe_open
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(hf_dir)
    tc = getattr(cfg, "text_config", cfg)
    hp = "model.language_model." if hasattr(cfg, "text_config") else "model."
    shapes = {}
    for f in sorted(os.listdir(hf_dir)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(hf_dir, f), "pt") as s:
                for k in s.keys():
                    shapes[k] = s.get_slice(k).get_shape()
    layers = []
    for i, t in enumerate(tc.layer_types):
        lc = tc.per_layer_config[i]
        full = t == "full_attention"
        layers.append({"full": full, "hd": lc.head_dim, "ng": lc.num_key_value_heads,
                       "shared": tc.kv_sharing_modes[i] == "reuse",
                       "k_eq_v": full and bool(getattr(tc, "attention_k_eq_v", False)),
                       "F": shapes[f"{hp}layers.{i}.mlp.gate_proj.weight"][0]})
    moe = bool(getattr(tc, "enable_moe_block", False))
    return {"conditional": hasattr(cfg, "text_config"), "H": tc.hidden_size, "nq": tc.num_attention_heads,
            "layers": layers, "moe": moe, "E": tc.num_experts if moe else 0,
            "I": tc.moe_intermediate_size if moe else 0,
            "per_layer": len({l["F"] for l in layers}) > 1}


def modules(geo, l):
    """(module path under decoder.layers, parallel kind, in, out, gated fc1, expert) of layer l."""
    g, H, nq = geo["layers"][l], geo["H"], geo["nq"]
    att = "self_attention_global." if g["full"] else "self_attention_sliding."
    out = [(att + "linear_qkv", "column", H, (nq + 2 * g["ng"]) * g["hd"], False, False),
           (att + "linear_proj", "row", nq * g["hd"], H, False, False)]
    if geo["moe"]:
        out += [("mlp.shared_experts.linear_fc1", "column", H, 2 * g["F"], True, False),
                ("mlp.shared_experts.linear_fc2", "row", g["F"], H, False, False),
                ("mlp.experts.experts.linear_fc1", "column", H, 2 * geo["I"], True, True),
                ("mlp.experts.experts.linear_fc2", "row", geo["I"], H, False, True)]
    else:
        out += [("mlp.linear_fc1", "column", H, 2 * g["F"], True, False),
                ("mlp.linear_fc2", "row", g["F"], H, False, False)]
    return out


def untrained_rows(geo, l, path):
    """The qkv B rows MB never trains (zero): V of a K=V layer, K and V of a KV-shared layer."""
    g = geo["layers"][l]
    if not path.endswith("linear_qkv") or not (g["k_eq_v"] or g["shared"]):
        return []
    hd, ng = g["hd"], g["ng"]
    qpg = geo["nq"] // ng * hd
    rows = []
    for grp in range(ng):
        base = grp * (qpg + 2 * hd)
        if g["shared"]:
            rows += list(range(base + qpg, base + qpg + hd))
        rows += list(range(base + qpg + hd, base + qpg + 2 * hd))
    return rows


def random_adapters(case, geo):
    """Stacked-layer index -> {(module path, "in"/"out"): tensor per layer}; global tensors keyed by DCP key."""
    import torch
    gen = torch.Generator().manual_seed(case["seed"])
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[case["dtype"]]
    r, E = case["rank"], geo["E"]
    per_layer = {}
    for l in range(len(geo["layers"])):
        for path, kind, fin, fout, gated, expert in modules(geo, l):
            if path.rsplit(".", 1)[1] not in case["targets"]:
                continue
            lead = [E] if expert else []
            a = torch.randn(*lead, r, fin, generator=gen) * 0.2
            b = torch.randn(*lead, fout, r, generator=gen) * 0.1
            if expert and case["experts"] in ("shared", "legacy"):  # one adapter, identical in every slot
                a, b = a[:1].expand_as(a), b[:1].expand_as(b)
            if expert and case["experts"] == "shared-outer":  # fc1 A and fc2 B shared across experts
                if "linear_fc1" in path:
                    a = a[:1].expand_as(a)
                else:
                    b = b[:1].expand_as(b)
            rows = untrained_rows(geo, l, path)
            if rows and not case["nonzero_unused_rows"]:
                b = b.clone()
                b[..., rows, :] = 0
            per_layer[(l, path)] = (a.to(dtype).contiguous(), b.to(dtype).contiguous(), kind, gated, expert)
    return per_layer


def stack_keys(geo, mp, l, path):
    """(DCP key prefix of the module, stacked index, stack size) or per-layer (index None)."""
    if geo["per_layer"]:
        return f"{mp}decoder.layers.{l}.{path}", None, None
    layers = geo["layers"]
    if path.startswith("self_attention_"):
        full = layers[l]["full"]
        same = [j for j in range(len(layers)) if layers[j]["full"] == full]
        return f"{mp}decoder.layers.{path}", same.index(l), len(same)
    return f"{mp}decoder.layers.{path}", l, len(layers)


def sharded(case, geo):
    """The sharded state dict of the adapters (every emulated TP rank's chunks) and the global reference tensors."""
    import torch
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
    tp = case["tp"]
    mp = "language_model." if geo["conditional"] else ""
    sd, reference, stacks = {}, {}, {}
    for (l, path), (a, b, kind, gated, expert) in random_adapters(case, geo).items():
        prefix, idx, n = stack_keys(geo, mp, l, path)
        lead = [] if idx is None else [(0, idx, n)]
        mode = case["experts"] if expert else None
        for which, t in (("linear_in", a), ("linear_out", b)):
            key = f"{prefix}.adapter.{which}.weight"
            # the TP axis of the per-expert matrix: A of a row-parallel base on columns, the rest on rows
            axis = 1 if (which == "linear_in" and kind == "row") else 0
            swiglu = which == "linear_out" and gated
            two_d = mode in ("shared", "legacy") or (mode == "shared-outer" and (
                (which == "linear_in" and "linear_fc1" in path) or (which == "linear_out" and "linear_fc2" in path)))
            mat = t[0] if (expert and two_d) else t  # the shared 2-D adapter an MB rank holds
            stacks.setdefault(key, {})[idx] = mat if mode != "shared" else t
            for rank in range(tp):
                if mat.dim() == 3:  # per-expert: [E, out, r], one chunk for all local experts (EP=1)
                    local = rank_slice(mat, axis + 1, rank, tp, swiglu)
                    if swiglu:
                        for part, frag in zip(local.chunk(2, 1), (rank, rank + tp)):
                            sd[f"{key}#{idx}#{rank}#{frag}"] = ShardedTensor.from_rank_offsets(
                                key, part.clone(), *lead, (len(lead) + 1 + axis, frag, 2 * tp), prepend_axis_num=len(lead))
                    else:
                        sd[f"{key}#{idx}#{rank}"] = ShardedTensor.from_rank_offsets(
                            key, local.clone(), *lead, (len(lead) + 1 + axis, rank, tp), prepend_axis_num=len(lead))
                    continue
                local = rank_slice(mat, axis, rank, tp, swiglu)
                if mode == "shared":  # MB's _apply_expert_axis_factory: the one adapter in every global slot
                    E = geo["E"]
                    for e in range(E):
                        parts = zip(local.chunk(2), (rank, rank + tp)) if swiglu else [(local, rank)]
                        for part, frag in parts:
                            sd[f"{key}#{idx}#{rank}#{e}#{frag}"] = ShardedTensor.from_rank_offsets(
                                key, part.clone(), *lead, (len(lead), e, E),
                                (len(lead) + 1 + axis, frag, 2 * tp if swiglu else tp), prepend_axis_num=len(lead) + 1)
                    continue
                ten = ShardedTensor.from_rank_offsets(key, local.clone(), *lead, (len(lead) + axis, rank, tp),
                                                      prepend_axis_num=len(lead))
                sd[f"{key}#{idx}#{rank}"] = apply_swiglu_sharded_factory(ten, tuple(lead)) if swiglu else ten
    for key, per in stacks.items():
        reference[key] = per[None] if None in per else torch.stack([per[i] for i in range(len(per))])
    return sd, reference


def rank_slice(t, axis, rank, tp, swiglu):
    """What TP rank `rank` holds of the global tensor t: its slice on `axis`; for fc1 B [gate_r; up_r]."""
    import torch
    if not swiglu:
        return t.chunk(tp, axis)[rank]
    return torch.cat([h.chunk(tp, axis)[rank] for h in t.chunk(2, axis)], axis)


def base_sharded(base_iter):
    """The base checkpoint's tensors (read with torch.distributed.checkpoint), one chunk per stacked layer."""
    import torch
    import torch.distributed.checkpoint as dcp
    from megatron.core.dist_checkpointing import ShardedTensor
    md = dcp.FileSystemReader(str(base_iter)).read_metadata().state_dict_metadata
    full = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.items() if hasattr(v, "size")}
    dcp.load(full, checkpoint_id=str(base_iter))
    sd = {}
    for key, t in full.items():
        stacked = "decoder.layers." in key and not key.split("decoder.layers.")[1][0].isdigit()
        if not stacked:
            sd[key] = ShardedTensor.from_rank_offsets(key, t.clone())
            continue
        for i in range(t.shape[0]):
            sd[f"{key}#{i}"] = ShardedTensor.from_rank_offsets(key, t[i].clone(), (0, i, t.shape[0]), prepend_axis_num=1)
    return sd


def trainable_names(case, geo):
    """The adapter parameters' names as the model's named_parameters gives them (per layer, the in-memory module
    names: self_attention, mlp.experts.linear_fc1), which set_params_to_save collects."""
    mp = "language_model." if geo["conditional"] else ""
    names = []
    for l in range(len(geo["layers"])):
        for path, *_ in modules(geo, l):
            if path.rsplit(".", 1)[1] in case["targets"]:
                module = path.replace("self_attention_global.", "self_attention.").replace(
                    "self_attention_sliding.", "self_attention.").replace("experts.experts.", "experts.")
                names += [f"{mp}decoder.layers.{l}.{module}.adapter.linear_{w}.weight" for w in ("in", "out")]
    return names


def peft_section(case):
    """The LoRA dataclass as MB's ConfigContainer.to_yaml serialises it (megatron.training ConfigContainerBase.
    _convert_value_to_dict: `_target_`, then every field not starting with `_`, sets kept as sets, so the PEFT
    base's params_to_save -- the trainable parameter names set_params_to_save collected -- dumps as !!set)."""
    target = case["peft_target"]
    section = {"_target_": target, "target_modules": list(case["targets"]), "exclude_modules": [],
               "canonical_mapping": {}, "dim": case["rank"], "alpha": case["alpha"], "dropout": 0.0,
               "dropout_position": "pre"}
    if case["params_to_save"]:
        section["params_to_save"] = set(case["trainable"])
    if target.endswith(".dora.DoRA"):
        section.update(lora_A_init_method="xavier", lora_B_init_method="zero")
        return section
    section.update(sequence_parallel_input_regather=False, lora_A_init_method="xavier", lora_B_init_method="zero",
                   a2a_experimental=False,
                   lora_dtype=None if case["lora_dtype"] is None else {"_target_": case["lora_dtype"], "_call_": False},
                   normalize_moe_lora=False, share_expert_adapters=case["experts"] != "per-expert",
                   experts_shared_outer_loras=case["experts"] == "shared-outer")
    if target.endswith(".VLMLoRA"):
        section.update(freeze_vision_model=True, freeze_vision_projection=True, freeze_language_model=True)
    return section


def run_config(case, base_iter):
    """The base checkpoint's run_config.yaml (MB's own when MB wrote the base) with the run's peft section and
    checkpoint.pretrained_checkpoint = the base checkpoint root."""
    import yaml
    with open(os.path.join(base_iter, "run_config.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["peft"] = peft_section(case)
    cfg.setdefault("checkpoint", {})
    cfg["checkpoint"].update(pretrained_checkpoint=str(case["base"]), save=str(case["out"]), load=None)
    return yaml.safe_dump(cfg, default_flow_style=False)


def write_case(case):
    from megatron.core import dist_checkpointing
    from safetensors.torch import save_file
    case = case_defaults(case)
    geo = geometry(case["hf"])
    latest = open(os.path.join(case["base"], "latest_checkpointed_iteration.txt")).read().strip()
    base_iter = os.path.join(case["base"], f"iter_{int(latest):07d}")
    sd, reference = sharded(case, geo)
    case["trainable"] = trainable_names(case, geo)
    if case["form"] == "full":
        sd.update(base_sharded(base_iter))
    sd.update(checkpoint_version=3.0, iteration=case["iteration"])
    it = os.path.join(case["out"], f"iter_{case['iteration']:07d}")
    os.makedirs(it, exist_ok=True)
    dist_checkpointing.save(sd, it, content_metadata={"singleton_local_shards": False, "chained_optim_avoid_prefix": True})
    with open(os.path.join(it, "run_config.yaml"), "w") as f:
        f.write(run_config(case, base_iter))
    with open(os.path.join(case["out"], "latest_checkpointed_iteration.txt"), "w") as f:
        f.write(str(case["iteration"]))
    if case["reference"]:
        save_file({k: v.contiguous() for k, v in reference.items()}, case["reference"])


def main(cases_file):
    import torch
    import torch.distributed as dist
    warnings.filterwarnings("ignore")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.cuda.synchronize = lambda *a, **k: None  # CPU-only run: the saver syncs on the current CUDA device
    torch.cuda.current_device = lambda: "cpu"
    with open(cases_file) as f:
        for case in json.load(f):
            write_case(case)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1])
