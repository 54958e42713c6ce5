"""mcore2hf on checkpoints laid out exactly as Megatron-Bridge writes them, saved in the test by megatron-core's own
dist_checkpointing.save (megatron_save.py --mb: its parallel_state ranks and sharding helpers), never by our writer:
fc1 as separate gate and up chunks, TP=2 and EP=2 splits, the vocabulary padded with zero rows, text-mode keys, no
hf_config.json, and the common state inside DCP as megatron-core 0.19 saves it. Each must give back every tensor of
the original HF checkpoint byte for byte and a config.json transformers reads as the original's."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file

from bridge_reference import load_hf
from conftest import MCORE_VERSIONS, TESTDATA, mcore_tree, run_g4
from mcore_oracle import COMMON_STATE

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))


def mb_save(pairs, *flags, mcore="0.16.1"):
    """megatron_save.py --mb with megatron-core `mcore`, for several (HF dir, out dir) pairs in one start-up."""
    env = dict(os.environ)
    tree = mcore_tree(mcore)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
    args = [str(x) for pair in pairs for x in pair]
    proc = subprocess.run([sys.executable, os.path.join(HERE, "megatron_save.py"), *args, "--mb", *map(str, flags)],
                          env=env, cwd=HERE, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def vocab_288(src, out):
    """`src` with a 288-token vocabulary (160 more embedding rows): not a multiple of 128, so MB pads it to 384."""
    hf = load_hf(src)
    cfg = json.loads((src / "config.json").read_text())
    key = "model.language_model.embed_tokens.weight"
    g = torch.Generator().manual_seed(288)
    hf[key] = torch.cat([hf[key], torch.randn(160, hf[key].shape[1], generator=g).to(hf[key].dtype)])
    cfg["text_config"]["vocab_size"] = 288
    out.mkdir()
    save_file(hf, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def synth_conditional(preset, out):
    """A conditional checkpoint without towers (MB 0.6.2 loads those only in text mode)."""
    run_g4("synth", "--preset", preset, "--form", "conditional", "--out", out, "-q")
    return out


# case -> (saver group, source). The cases of one group are saved by one megatron_save.py run.
GROUPS = {"tp1": ((), "0.16.1"), "text": (("--text-mode",), "0.16.1"), "mcore-0.19": ((), "0.19.2"),
          "ep2": (("--ep", 2), "0.16.1"), "tp2-ep2": (("--tp", 2, "--ep", 2), "0.16.1")}
CASES = {**{f"fc1-{n}": ("tp1", lambda d, n=n: TESTDATA / n) for n in ("tiny-e2b", "tiny-e4b-vla", "tiny-31b", "tiny-26b-a4b")},
         "padded": ("tp1", lambda d: vocab_288(TESTDATA / "tiny-31b", d / "hf288")),
         **{f"text-{p}": ("text", lambda d, p=p: synth_conditional(p, d / f"hf-{p}")) for p in ("tiny-31b", "tiny-26b-a4b")},
         "mcore-0.19": ("mcore-0.19", lambda d: TESTDATA / "tiny-31b"),
         "ep2": ("ep2", lambda d: TESTDATA / "tiny-26b-a4b"),
         "tp2-ep2": ("tp2-ep2", lambda d: TESTDATA / "tiny-26b-a4b")}


@pytest.fixture(scope="module")
def mb(tmp_path_factory):
    """case -> (HF source, checkpoint saved by megatron-core with hf_config.json added); a group is saved on first use.
    MB writes no hf_config.json: these tests give mcore2hf the config that way (run_config.yaml is tested alone)."""
    root = tmp_path_factory.mktemp("mb")
    done = {}

    def get(case):
        if case not in done:
            group = CASES[case][0]
            members = {c: CASES[c][1](root) for c, (g, _) in CASES.items() if g == group}
            flags, mcore = GROUPS[group]
            mb_save([(src, root / c) for c, src in members.items()], *flags, mcore=mcore)
            for c, src in members.items():
                shutil.copy(src / "config.json", root / c / "hf_config.json")
                done[c] = (src, root / c)
        return done[case]
    return get


def chunks(ckpt, key):
    md = dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata[key]
    return list(md.size), sorted((list(c.offsets), list(c.sizes)) for c in md.chunks)


def assert_gives_back(ckpt, src, out, *extra):
    """mcore2hf of `ckpt`: every original tensor byte for byte (dtype included), and a config.json that transformers
    parses to the original's config, every field and default."""
    from transformers import AutoConfig
    proc = run_g4("mcore2hf", "--mcore", ckpt, "--out", out, "-q", *extra)
    ours, orig = load_hf(out), load_hf(src)
    assert set(ours) == set(orig), f"missing {set(orig) - set(ours)}, unexpected {set(ours) - set(orig)}"
    for k, t in orig.items():
        assert ours[k].dtype == t.dtype and torch.equal(ours[k], t), k
    a, b = (AutoConfig.from_pretrained(p).to_dict() for p in (out, src))
    for d in (a, b):
        d.pop("_name_or_path", None)
    assert a == b
    return proc


@pytest.mark.parametrize("name", ["tiny-e2b", "tiny-e4b-vla", "tiny-31b", "tiny-26b-a4b"])
def test_mcore2hf_reads_fc1_stored_as_separate_gate_and_up_chunks_as_megatron_bridge_saves_it(tmp_path, mb, name):
    """TP=1: megatron-core's apply_swiglu_sharded_factory stores each layer's [gate; up] as two chunks of one global
    tensor (gate at row 0, up at row I), the dense MLP, the shared expert and every routed expert alike."""
    src, ckpt = mb(f"fc1-{name}")
    prefix = "" if name == "tiny-e2b" else "language_model."
    key = {"tiny-e2b": "decoder.layers.0.mlp.linear_fc1.weight",
           "tiny-26b-a4b": "decoder.layers.mlp.shared_experts.linear_fc1.weight"}.get(name, "decoder.layers.mlp.linear_fc1.weight")
    size, got = chunks(ckpt, prefix + key)
    half = size[-2] // 2
    if name == "tiny-e2b":
        assert got == [([0, 0], [half, size[1]]), ([half, 0], [half, size[1]])]
    else:
        assert got == sorted(([l, r, 0], [1, half, size[2]]) for l in range(size[0]) for r in (0, half))
    if name == "tiny-26b-a4b":
        size, got = chunks(ckpt, prefix + "decoder.layers.mlp.experts.experts.linear_fc1.weight")
        assert len(got) == size[0] * size[1] * 2 and all(s[2] == size[2] // 2 for _, s in got)
    assert_gives_back(ckpt, src, tmp_path / "hf")


@pytest.mark.parametrize("case,tp,ep", [("ep2", 1, 2), ("tp2-ep2", 2, 2)])
def test_mcore2hf_reads_the_tp_and_ep_splits_megatron_core_saves_for_the_moe_model(tmp_path, mb, case, tp, ep):
    """tiny-26b-a4b saved by TP x EP gloo ranks: qkv/fc1 split on rows and proj/fc2 on columns per TP rank (fc1's
    gate and up halves each split, the word embedding on rows), the experts divided between EP ranks."""
    src, ckpt = mb(case)
    assert len(list(ckpt.glob("__*_0.distcp"))) == tp * ep  # one file set per rank
    size, got = chunks(ckpt, "language_model.decoder.layers.mlp.experts.experts.linear_fc1.weight")
    assert len(got) == size[0] * size[1] * 2 * tp
    assert len(chunks(ckpt, "language_model.decoder.layers.self_attention_sliding.linear_proj.weight")[1]) == 4 * tp
    size, got = chunks(ckpt, "language_model.embedding.word_embeddings.weight")
    assert size[0] == 128 and len(got) == tp  # the MoE provider does not pad the vocabulary
    assert_gives_back(ckpt, src, tmp_path / "hf")


def test_mcore2hf_strips_a_vocabulary_padded_with_zero_rows_as_megatron_bridge_pads_it(tmp_path, mb):
    src, ckpt = mb("padded")
    assert chunks(ckpt, "language_model.embedding.word_embeddings.weight")[0] == [384, 64]
    assert_gives_back(ckpt, src, tmp_path / "hf")


@pytest.mark.parametrize("preset", ["tiny-31b", "tiny-26b-a4b"])
def test_mcore2hf_writes_the_conditional_checkpoint_back_from_text_mode_keys(tmp_path, mb, preset):
    """MB's GEMMA4_CONVERSION_MODE=text saves a conditional checkpoint as a plain GPTModel: no `language_model.`."""
    src, ckpt = mb(f"text-{preset}")
    keys = dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    assert "embedding.word_embeddings.weight" in keys and not any(k.startswith("language_model.") for k in keys)
    assert_gives_back(ckpt, src, tmp_path / "hf")


def test_mcore2hf_reads_the_common_state_megatron_core_0_19_saves_inside_dcp(tmp_path, mb, oracles):
    """megatron-core 0.19.2's save: no common.pt, the common state as the `common_state` object in DCP (the one
    hf2mcore's default layout writes: megatron-core reads back the same dict from both)."""
    src, ckpt = mb("mcore-0.19")
    assert not (ckpt / "common.pt").exists()
    assert "common_state/shard_0_1" in dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    assert oracles("0.19.2").call("common_state", ckpt) == COMMON_STATE
    assert_gives_back(ckpt, src, tmp_path / "hf")


def dense_provider(t, tc):
    """Megatron-Bridge 0.6.2's Gemma4Bridge._build_dense_provider: the provider fields it sets from an HF text config
    as transformers <= 5.12 (MB's pin) exposes it: `t` is config.json's dict (getattr with MB's defaults), with the
    released flat fields that 5.23's per_layer_config replaces (global head dim and KV heads) taken from `tc`,
    transformers 5.23's parse of the same file."""
    sliding_layer = tc.per_layer_config[tc.layer_types.index("sliding_attention")]
    full_layer = tc.per_layer_config[tc.layer_types.index("full_attention")]
    t = {**t, "head_dim": sliding_layer.head_dim, "num_key_value_heads": sliding_layer.num_key_value_heads}
    t.setdefault("global_head_dim", full_layer.head_dim)
    t.setdefault("num_global_key_value_heads", None if full_layer.num_key_value_heads == t["num_key_value_heads"]
                 else full_layer.num_key_value_heads)
    rope = t.get("rope_parameters") or {}
    sliding, full = rope.get("sliding_attention", {}), rope.get("full_attention", {})
    layer_types = t.get("layer_types")
    return {
        "num_layers": t["num_hidden_layers"], "hidden_size": t["hidden_size"], "ffn_hidden_size": t["intermediate_size"],
        "num_attention_heads": t["num_attention_heads"], "num_query_groups": t["num_key_value_heads"],
        "kv_channels": t.get("head_dim", 256), "global_kv_channels": t.get("global_head_dim", 512),
        "num_global_query_groups": t.get("num_global_key_value_heads", t["num_key_value_heads"]),
        "seq_length": t["max_position_embeddings"], "vocab_size": t["vocab_size"], "normalization": "RMSNorm",
        "layernorm_epsilon": t["rms_norm_eps"], "window_size": [t.get("sliding_window", 512) - 1, 0],  # a tuple, listed
        "window_attn_skip_freq": [x == "sliding_attention" for x in layer_types] if layer_types is not None else 6,
        "sliding_window_rope_base": sliding.get("rope_theta", 10000.0),
        "full_attention_rope_base": full.get("rope_theta", 1000000.0),
        "full_attention_rope_partial_factor": full.get("partial_rotary_factor", 0.25),
        "num_kv_shared_layers": t.get("num_kv_shared_layers", 0), "use_double_wide_mlp": t.get("use_double_wide_mlp", False),
        "attention_k_eq_v": t.get("attention_k_eq_v", False),
        "per_layer_embed_vocab_size": t.get("vocab_size_per_layer_input", t["vocab_size"]),
        "per_layer_embed_dim": t.get("hidden_size_per_layer_input", 256),
        "final_logit_softcapping": t.get("final_logit_softcapping"), "bf16": True,
        "params_dtype": {"_target_": "torch.bfloat16", "_call_": False},  # megatron-core's dtype representer
        "tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1, "make_vocab_size_divisible_by": 128}


def hf_node(cfg):
    """An HF config object in the provider as MB's Container._convert_pretrained_config_to_dict writes it."""
    return {"_target_": f"{type(cfg).__module__}.{type(cfg).__qualname__}",
            **{k: v for k, v in cfg.to_dict().items() if not k.startswith("_")}} if cfg is not None else None


def mb_run_config(src):
    """run_config.yaml as MB 0.6.2 writes it for a dense checkpoint (yaml.safe_dump of ConfigContainer.to_dict()):
    the model section with the provider's `_target_` and fields (Gemma4DenseVLProvider for the conditional form,
    which adds the HF vision/text config nodes and token ids), and the checkpoint section."""
    import yaml
    from transformers import AutoConfig
    cfg = json.loads((src / "config.json").read_text())
    conditional = "text_config" in cfg
    hf = AutoConfig.from_pretrained(src)
    model = dense_provider(cfg["text_config"] if conditional else cfg, getattr(hf, "text_config", hf))
    if conditional:
        model = {"_target_": "megatron.bridge.models.gemma_vl.gemma4_vl_provider.Gemma4DenseVLProvider", **model,
                 "vision_config": hf_node(hf.vision_config), "text_config": hf_node(hf.text_config),
                 "audio_config": hf_node(getattr(hf, "audio_config", None)),
                 "vision_soft_tokens_per_image": cfg.get("vision_soft_tokens_per_image", 280),
                 "bos_token_id": cfg.get("bos_token_id", 2), "eos_token_id": cfg.get("eos_token_id", 1),
                 "image_token_id": cfg.get("image_token_id", 258880), "video_token_id": cfg.get("video_token_id", 258884),
                 "audio_token_id": cfg.get("audio_token_id", 258881)}
    else:
        model = {"_target_": "megatron.bridge.models.gemma.gemma4_provider.Gemma4DenseProvider", **model}
    return yaml.safe_dump({"model": model, "checkpoint": {"ckpt_format": "torch_dist", "save": None, "load": None},
                           "train": {"micro_batch_size": 1, "global_batch_size": 1}})


# The HF fields that state the architecture (config.json's other fields, e.g. token ids of the text-only
# provider, are not in what MB's run_config records for every provider).
ARCH = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "num_global_key_value_heads", "head_dim", "global_head_dim", "layer_types",
        "sliding_window", "rms_norm_eps", "rope_parameters", "final_logit_softcapping", "attention_k_eq_v",
        "num_kv_shared_layers", "use_double_wide_mlp", "hidden_size_per_layer_input", "vocab_size_per_layer_input",
        "enable_moe_block", "max_position_embeddings", "tie_word_embeddings"]


@pytest.mark.parametrize("name", ["tiny-e2b", "tiny-31b"])
def test_mcore2hf_rebuilds_the_hf_config_from_megatron_bridges_run_config_without_hf_config_json(tmp_path, mb, name):
    """MB writes no hf_config.json: mcore2hf takes the architecture from run_config.yaml's provider fields (the
    text provider of the causal E2B, the dense VL provider with its HF config nodes for the conditional 31B)."""
    from transformers import AutoConfig
    src, saved = mb(f"fc1-{name}")
    ckpt = tmp_path / "mb"
    shutil.copytree(saved, ckpt, ignore=shutil.ignore_patterns("hf_config.json"))
    (ckpt / "run_config.yaml").write_text(mb_run_config(src))
    run_g4("mcore2hf", "--mcore", ckpt, "--out", tmp_path / "hf", "-q")
    ours, orig = load_hf(tmp_path / "hf"), load_hf(src)
    assert set(ours) == set(orig) and all(ours[k].dtype == t.dtype and torch.equal(ours[k], t) for k, t in orig.items())
    a, b = (AutoConfig.from_pretrained(p) for p in (tmp_path / "hf", src))
    assert a.architectures == b.architectures
    ta, tb = (getattr(c, "text_config", c).to_dict() for c in (a, b))
    assert {k: ta.get(k) for k in ARCH} == {k: tb.get(k) for k in ARCH}


@pytest.mark.parametrize("version", MCORE_VERSIONS)
@pytest.mark.parametrize("case,flags", [("fc1-tiny-31b", ()), ("fc1-tiny-26b-a4b", ()), ("padded", ()),
                                        ("padded", ("--pad-vocab", "128")), ("text-tiny-31b", ("--text-mode",)),
                                        ("text-tiny-26b-a4b", ("--text-mode",))])
def test_hf2mcore_writes_the_tensors_megatron_core_saves_for_megatron_bridges_model(tmp_path, mb, oracles, case, flags,
                                                                                     version):
    """What we write, loaded by megatron-core, equals what megatron-core itself saved for MB's model of the same HF
    checkpoint: every key, shape, dtype and byte (the vocabulary padded to 128 with zero rows by default, text-mode
    keys with --text-mode). 0.16.1 reads the --common-pt layout."""
    src, saved = mb(case)
    layout = ("--common-pt",) if version == "0.16.1" else ()
    run_g4("hf2mcore", "--hf", src, "--out", tmp_path / "ours", "-q", *flags, *layout)
    oracles(version).call("check_same_tensors", tmp_path / "ours" / "iter_0000000", saved)
