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
from conftest import TESTDATA, mcore_tree, run_g4
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
    gate and up halves each split), the experts divided between EP ranks, the vocabulary padded to 128 x TP."""
    src, ckpt = mb(case)
    assert len(list(ckpt.glob("__*_0.distcp"))) == tp * ep  # one file set per rank
    size, got = chunks(ckpt, "language_model.decoder.layers.mlp.experts.experts.linear_fc1.weight")
    assert len(got) == size[0] * size[1] * 2 * tp
    assert len(chunks(ckpt, "language_model.decoder.layers.self_attention_sliding.linear_proj.weight")[1]) == 4 * tp
    size, got = chunks(ckpt, "language_model.embedding.word_embeddings.weight")
    assert size[0] == 128 * tp and len(got) == tp
    assert_gives_back(ckpt, src, tmp_path / "hf")


def test_mcore2hf_strips_a_vocabulary_padded_with_zero_rows_as_megatron_bridge_pads_it(tmp_path, mb):
    src, ckpt = mb("padded")
    assert chunks(ckpt, "language_model.embedding.word_embeddings.weight")[0] == [384, 64]
    assert_gives_back(ckpt, src, tmp_path / "hf")


def test_mcore2hf_reads_the_common_state_megatron_core_0_19_saves_inside_dcp(tmp_path, mb, oracles):
    """megatron-core 0.19.2's save: no common.pt, the common state as the `common_state` object in DCP (the one
    hf2mcore's default layout writes: megatron-core reads back the same dict from both)."""
    src, ckpt = mb("mcore-0.19")
    assert not (ckpt / "common.pt").exists()
    assert "common_state/shard_0_1" in dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    assert oracles("0.19.2").call("common_state", ckpt) == COMMON_STATE
    assert_gives_back(ckpt, src, tmp_path / "hf")
