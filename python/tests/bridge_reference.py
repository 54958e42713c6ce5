"""An independent Python statement of Megatron-Bridge's Gemma 4 layout (megatron-bridge-layout.md §1, §4.2 and
the MB source notes), used as the oracle for hf2mcore: from an HF checkpoint, the torch_dist tensors and
`_extra_state` objects Megatron-Bridge would store. The layer geometry comes from transformers' own config
objects, not from g4convert, so a bug in our config parsing or mapping tables cannot cancel out."""
import glob
import os

import torch
from safetensors import safe_open
from transformers import AutoConfig


def load_hf(path):
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                out[k] = s.get_tensor(k)
    return out


def text_config(path):
    cfg = AutoConfig.from_pretrained(path)
    return cfg, getattr(cfg, "text_config", cfg), hasattr(cfg, "text_config")


def layer_geometry(tc):
    modes = tc.kv_sharing_modes
    out = []
    for i, t in enumerate(tc.layer_types):
        lc = tc.per_layer_config[i]
        out.append({"full": t == "full_attention", "hd": lc.head_dim, "ng": lc.num_key_value_heads,
                    "shared": modes[i] == "reuse"})
    return out


def per_layer_params(hf, tc, hp, l, geo):
    """Megatron parameter name (without "decoder.layers.{l}.") -> tensor, for one layer."""
    p = f"{hp}layers.{l}."
    g = geo[l]
    H, nq, hd, ng = tc.hidden_size, tc.num_attention_heads, g["hd"], g["ng"]
    q = hf[p + "self_attn.q_proj.weight"]
    dtype = q.dtype
    k = hf.get(p + "self_attn.k_proj.weight")
    v = hf.get(p + "self_attn.v_proj.weight")
    if k is None:  # KV-shared layer of a re-saved checkpoint: zeros (MB maybe_modify_loaded_hf_weight)
        k = torch.zeros(ng * hd, H, dtype=dtype)
        v = torch.zeros(ng * hd, H, dtype=dtype) if v is None else v
    if v is None:  # K=V global layer: V slot is a copy of K
        v = k.clone()
    qkv = torch.cat([q.view(ng, nq // ng * hd, H), k.view(ng, hd, H), v.view(ng, hd, H)], dim=1).reshape(-1, H)
    k_norm = hf.get(p + "self_attn.k_norm.weight")
    if k_norm is None:
        k_norm = torch.ones(hd, dtype=dtype)
    out = {}
    moe = getattr(tc, "enable_moe_block", False)
    att = "self_attention."
    out[att + "linear_qkv.weight"] = qkv
    out[att + "q_layernorm.weight"] = hf[p + "self_attn.q_norm.weight"]
    out[att + "k_layernorm.weight"] = k_norm
    out[att + "linear_proj.weight"] = hf[p + "self_attn.o_proj.weight"]
    fc1 = torch.cat([hf[p + "mlp.gate_proj.weight"], hf[p + "mlp.up_proj.weight"]], 0)
    if moe:
        out[att + "linear_qkv.layer_norm_weight"] = hf[p + "input_layernorm.weight"]
        out[att + "linear_proj.post_layernorm.weight"] = hf[p + "post_attention_layernorm.weight"]
        out["pre_mlp_layernorm.weight"] = hf[p + "pre_feedforward_layernorm_2.weight"]
        out["pre_shared_expert_layernorm.weight"] = hf[p + "pre_feedforward_layernorm.weight"]
        out["mlp.shared_experts.linear_fc1.weight"] = fc1
        out["mlp.shared_experts.linear_fc2.weight"] = hf[p + "mlp.down_proj.weight"]
        out["mlp.post_shared_expert_layernorm.weight"] = hf[p + "post_feedforward_layernorm_1.weight"]
        out["mlp.router.weight"] = hf[p + "router.proj.weight"]
        out["mlp.router.scale"] = hf[p + "router.scale"]
        out["mlp.router.per_expert_scale"] = hf[p + "router.per_expert_scale"]
        out["mlp.experts.experts.linear_fc1.weight"] = hf[p + "experts.gate_up_proj"]
        out["mlp.experts.experts.linear_fc2.weight"] = hf[p + "experts.down_proj"]
        out["mlp.post_moe_layernorm.weight"] = hf[p + "post_feedforward_layernorm_2.weight"]
        out["post_ffn_layernorm.weight"] = hf[p + "post_feedforward_layernorm.weight"]
    else:
        out["input_layernorm.weight"] = hf[p + "input_layernorm.weight"]
        out["post_self_attn_layernorm.weight"] = hf[p + "post_attention_layernorm.weight"]
        out["pre_mlp_layernorm.weight"] = hf[p + "pre_feedforward_layernorm.weight"]
        out["mlp.linear_fc1.weight"] = fc1
        out["mlp.linear_fc2.weight"] = hf[p + "mlp.down_proj.weight"]
        out["post_mlp_layernorm.weight"] = hf[p + "post_feedforward_layernorm.weight"]
        if tc.hidden_size_per_layer_input:
            for n in ("per_layer_input_gate.weight", "per_layer_projection.weight", "post_per_layer_input_norm.weight"):
                out[n] = hf[p + n]
    out["layer_scalar"] = hf[p + "layer_scalar"]
    return out


def typed(name, geo_l):
    if name.startswith("self_attention."):
        return ("self_attention_global." if geo_l["full"] else "self_attention_sliding.") + name[len("self_attention."):]
    return name


def expected_checkpoint(path):
    """(tensors: key -> global tensor, extra_state: set of DCP keys, per_layer: bool, layer index map)."""
    cfg, tc, vl = text_config(path)
    hf = load_hf(path)
    hp = "model.language_model." if vl else "model."
    mp = "language_model." if vl else ""
    geo = layer_geometry(tc)
    L = tc.num_hidden_layers
    moe = getattr(tc, "enable_moe_block", False)
    tensors = {mp + "embedding.word_embeddings.weight": hf[hp + "embed_tokens.weight"],
               mp + "decoder.final_layernorm.weight": hf[hp + "norm.weight"]}
    if not moe and tc.hidden_size_per_layer_input:
        tensors[mp + "per_layer_embedding.weight"] = hf[hp + "embed_tokens_per_layer.weight"]
        tensors[mp + "per_layer_model_proj.weight"] = hf[hp + "per_layer_model_projection.weight"]
        tensors[mp + "per_layer_proj_norm.weight"] = hf[hp + "per_layer_projection_norm.weight"]
    layers = [per_layer_params(hf, tc, hp, l, geo) for l in range(L)]
    # hetereogenous_dist_checkpoint (per-layer keys) when the double-wide MLP changes a layer's shape
    per_layer = len({tuple(x["mlp.linear_fc1.weight"].shape) for x in layers if "mlp.linear_fc1.weight" in x}) > 1
    stacks = {}
    for l, params in enumerate(layers):
        for name, t in params.items():
            key = typed(name, geo[l])
            if per_layer:
                tensors[f"{mp}decoder.layers.{l}.{key}"] = t
            else:
                stacks.setdefault(mp + "decoder.layers." + key, []).append(t)
    for key, ts in stacks.items():
        tensors[key] = torch.stack(ts)
    for k, t in hf.items():  # VL towers pass through under their HF names minus "model."
        for tower in ("vision_tower.", "embed_vision.", "audio_tower.", "embed_audio."):
            if k.startswith("model." + tower):
                tensors[k[len("model."):]] = t

    n_type = {True: sum(g["full"] for g in geo), False: sum(not g["full"] for g in geo)}
    rank = [sum(1 for j in range(l) if geo[j]["full"] == geo[l]["full"]) for l in range(L)]
    extra = {mp + "decoder.final_layernorm._extra_state/shard_0_1"}
    if moe:
        attn_mods = ["linear_qkv", "q_layernorm", "k_layernorm", "linear_proj", "linear_proj.post_layernorm"]
        layer_mods = ["pre_mlp_layernorm", "mlp.shared_experts.linear_fc1", "mlp.shared_experts.linear_fc2"]
    else:
        attn_mods = ["linear_qkv", "linear_proj"]
        layer_mods = ["mlp.linear_fc1", "mlp.linear_fc2"]
        if tc.hidden_size_per_layer_input:
            extra.add(mp + "per_layer_model_proj._extra_state/shard_0_1")
    for l in range(L):
        t = "self_attention_global." if geo[l]["full"] else "self_attention_sliding."
        for m in attn_mods:
            extra.add(f"{mp}decoder.layers.{l}.{t}{m}._extra_state/shard_0_1" if per_layer
                      else f"{mp}decoder.layers.{t}{m}._extra_state/shard_{rank[l]}_{n_type[geo[l]['full']]}")
        for m in layer_mods:
            extra.add(f"{mp}decoder.layers.{l}.{m}._extra_state/shard_0_1" if per_layer
                      else f"{mp}decoder.layers.{m}._extra_state/shard_{l}_{L}")
        if moe:
            for e in range(tc.num_experts):
                for fc in ("linear_fc1", "linear_fc2"):
                    extra.add(f"{mp}decoder.layers.mlp.experts.experts.{fc}._extra_state/shard_{l}.{e}_{L}.{tc.num_experts}")
    return tensors, extra, per_layer, geo, rank, n_type
