#!/usr/bin/env python3
"""Writes testdata/tiny-*/: tiny Gemma 4 checkpoints of the four released structures, saved by real
transformers (save_pretrained), so g4convert's readers are tested against what transformers writes, not
against our own writer.

The configs mirror g4convert's tiny presets but are written here independently. After random init,
every norm weight, layer_scalar, router.scale and router.per_expert_scale is re-drawn away from 1.0
(transformers initialises them to ones, which would hide a dropped or mis-wired scale).

The two tower checkpoints (tiny-e4b-vla, tiny-26b-a4b-vl) have vision and audio towers with
use_clipped_linears, as the released E2B/E4B vision towers and every audio tower have: each clipped linear
carries four 0-d clip bounds. There every tower tensor is re-drawn too: the clip bounds to finite values
(input_min < 0 < input_max, tight enough to clip; transformers' default is +-inf), constant inits (norm weights
and the position table of ones, zero biases and per_dim_scale) away from their constant.

Run with the project's test venv:  $(bin/pyenv)/bin/python testdata/gen/make_tiny_checkpoints.py
"""
import json
import pathlib
import shutil
import sys

import torch
import transformers
from transformers import (Gemma4AudioConfig, Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration,
                          Gemma4TextConfig, Gemma4VisionConfig)

ROOT = pathlib.Path(__file__).resolve().parents[1]
S, F = "sliding_attention", "full_attention"


def text(layer_types, kv, intermediate, **extra):
    base = dict(vocab_size=128, hidden_size=64, intermediate_size=intermediate, num_hidden_layers=len(layer_types),
                layer_types=layer_types, num_attention_heads=4, num_key_value_heads=kv, head_dim=32,
                global_head_dim=64, sliding_window=4, final_logit_softcapping=30.0, hidden_size_per_layer_input=0,
                vocab_size_per_layer_input=128, max_position_embeddings=131072)
    base.update(extra)
    return base


STRUCTURES = {
    # E2B: PLE, layers 3-5 KV-shared (sources 2 and 1), double-wide MLP on the shared tail. Causal form, fp32.
    "tiny-e2b": dict(form="causal", dtype=torch.float32,
                     text=text([S, F, S, S, S, F], 1, 48, hidden_size_per_layer_input=16, num_kv_shared_layers=3,
                               use_double_wide_mlp=True)),
    # E4B: PLE, layers 4-5 KV-shared, with a tiny audio tower as the released E-series have. Conditional, bf16.
    "tiny-e4b": dict(form="conditional", dtype=torch.bfloat16,
                     text=text([S, S, F, S, S, F], 2, 64, hidden_size_per_layer_input=16, num_kv_shared_layers=2),
                     audio=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                subsampling_conv_channels=[16, 8], conv_kernel_size=3, attention_chunk_size=4,
                                attention_context_left=5, attention_context_right=0, output_proj_dims=32,
                                use_clipped_linears=False)),
    # 26B-A4B: MoE (6 experts, top 2) beside the dense MLP, K=V on full layers, vision tower. Conditional, bf16.
    "tiny-26b-a4b": dict(form="conditional", dtype=torch.bfloat16,
                         text=text([S, S, F, S, S, F], 2, 48, attention_k_eq_v=True, num_global_key_value_heads=1,
                                   enable_moe_block=True, num_experts=6, top_k_experts=2, moe_intermediate_size=16,
                                   use_bidirectional_attention="vision", max_position_embeddings=262144),
                         vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                     num_key_value_heads=1, head_dim=8, patch_size=4, pooling_kernel_size=2,
                                     position_embedding_size=64, standardize=True)),
    # 31B: dense, K=V on full layers, vision tower. Conditional, bf16.
    "tiny-31b": dict(form="conditional", dtype=torch.bfloat16,
                     text=text([S, S, F, S, S, F], 2, 96, attention_k_eq_v=True, num_global_key_value_heads=1,
                               use_bidirectional_attention="vision", max_position_embeddings=262144),
                     vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                 num_key_value_heads=1, head_dim=8, patch_size=4, pooling_kernel_size=2,
                                 position_embedding_size=64, standardize=True)),
}
# Towers with clipped linears and every tower tensor re-drawn (appended, so the seeds above do not move).
TOWER_VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=1,
                    head_dim=8, patch_size=4, pooling_kernel_size=2, position_embedding_size=64, use_clipped_linears=True)
STRUCTURES.update({
    # E4B-like with a vision and an audio tower, both clipped (released E2B/E4B). Conditional, bf16.
    "tiny-e4b-vla": dict(form="conditional", dtype=torch.bfloat16, random_towers=True,
                         text=STRUCTURES["tiny-e4b"]["text"], vision=dict(TOWER_VISION, standardize=False),
                         audio=dict(STRUCTURES["tiny-e4b"]["audio"], use_clipped_linears=True)),
    # 26B-A4B-like with a clipped, standardized vision tower (std_bias/std_scale beside the clip bounds).
    "tiny-26b-a4b-vl": dict(form="conditional", dtype=torch.bfloat16, random_towers=True,
                            text=STRUCTURES["tiny-26b-a4b"]["text"], vision=dict(TOWER_VISION, standardize=True)),
})

MM_TOKEN_IDS = dict(image_token_id=4, boi_token_id=5, eoi_token_id=6, video_token_id=7, audio_token_id=8,
                    boa_token_id=9, eoa_token_index=10)

AWAY_FROM_ONE = ("norm.weight", "layernorm.weight", "layernorm_1.weight", "layernorm_2.weight", "layer_scalar",
                 "router.scale", "router.per_expert_scale", "std_scale")


CLIP_BOUNDS = ("input_min", "input_max", "output_min", "output_max")


def redraw_tower_tensor(key, tensor, g):
    """Tower tensors away from transformers' defaults: finite clip bounds of either sign around 0 (|bound| in
    [0.5, 2], so activations of order 1 are clipped), constants (ones, zeros) re-drawn, random inits kept."""
    leaf = key.rsplit(".", 1)[1]
    if leaf in CLIP_BOUNDS:
        magnitude = 0.5 + 1.5 * torch.rand(tensor.shape, generator=g)
        tensor.copy_(-magnitude if leaf.endswith("_min") else magnitude)
    elif tensor.numel() > 0 and bool((tensor == tensor.flatten()[0]).all()):
        rand = torch.rand(tensor.shape, generator=g)
        if tensor.flatten()[0].item() == 1.0:
            sign = torch.where(torch.rand(tensor.shape, generator=g) < 0.5, -1.0, 1.0)
            tensor.copy_(1.0 + sign * (0.1 + 0.4 * rand))
        else:
            tensor.copy_(tensor + 0.2 * (rand - 0.5))


def build(name, spec, seed):
    torch.manual_seed(seed)
    if spec["form"] == "causal":
        model = Gemma4ForCausalLM(Gemma4TextConfig(**spec["text"]))
    else:
        # Small multimodal token ids (as transformers' own Gemma 4 tests use) so that placeholder runs fit the
        # 128-token vocabulary and the forward's placeholder handling can be tested.
        config = Gemma4Config(text_config=spec["text"], **MM_TOKEN_IDS,
                              vision_config=Gemma4VisionConfig(**spec["vision"]) if "vision" in spec else None,
                              audio_config=Gemma4AudioConfig(**spec["audio"]) if "audio" in spec else None)
        model = Gemma4ForConditionalGeneration(config)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            text = key.startswith(("model.layers.", "model.language_model."))
            if spec.get("random_towers") and not text and key != "lm_head.weight":
                redraw_tower_tensor(key, tensor, g)
                continue
            rand = torch.rand(tensor.shape, generator=g)
            if key.endswith("layer_scalar"):
                tensor.copy_(0.2 + 0.7 * rand)
            elif text and key.endswith(("self_attn.q_norm.weight", "self_attn.k_norm.weight")):
                # The attention scale is 1.0, so scores are q·k of RMS-normalised heads: with weights near 1 they
                # reach ±3·sqrt(hd) and the softmax is a near-argmax that flips on 1-ulp bf16 noise (transformers'
                # own eager and SDPA paths then disagree). [0.2, 0.45] keeps scores moderate, as trained weights do.
                tensor.copy_(0.2 + 0.25 * rand)
            elif key.endswith(AWAY_FROM_ONE):
                sign = torch.where(torch.rand(tensor.shape, generator=g) < 0.5, -1.0, 1.0)
                tensor.copy_(1.0 + sign * (0.1 + 0.4 * rand))
            elif text and key.endswith("router.proj.weight"):
                # init std 0.02 gives near-uniform router probabilities whose top-k is decided by rounding noise;
                # std 1 gives router logits of order 1, as in a trained router.
                tensor.copy_(torch.randn(tensor.shape, generator=g))
    return model.to(spec["dtype"])


def main():
    versions = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    for i, (name, spec) in enumerate(STRUCTURES.items()):
        out = ROOT / name
        if out.exists():
            shutil.rmtree(out)
        model = build(name, spec, seed=1000 + i)
        model.save_pretrained(out)
        print(f"{name}: {sum(1 for _ in model.state_dict())} tensors -> {out}", file=sys.stderr)
    (ROOT / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")


if __name__ == "__main__":
    main()
