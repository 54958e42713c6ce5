"""hf2mcore output checked by the real loaders: megatron-core 0.16.1's and 0.19.2's dist_checkpointing (load_tensors_metadata,
load_plain_tensors, and a per-layer sharded load the way Megatron-Bridge requests it), torch.distributed.checkpoint
and torch.load(weights_only=True); mcore2hf output checked by transformers (strict load, identical logits).
The expected Megatron tensors come from bridge_reference.py, an independent statement of Megatron-Bridge's mapping."""
import io
import json
import os
import shutil
import warnings

import pytest
import torch
import yaml

from bridge_reference import expected_checkpoint, load_hf, text_config
from conftest import MCORE_VERSIONS, TESTDATA, TINY, TOWERS, run_g4, run_g4_json
from mcore_oracle import COMMON_STATE, OracleError, init_megatron

warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def megatron():
    """megatron-core 0.16.1's dist_checkpointing in this process (mcore_oracle.py patches and sets it up)."""
    import torch.distributed.checkpoint.metadata as dcp_metadata
    original = dcp_metadata.TensorProperties.__setstate__
    yield init_megatron()
    dcp_metadata.TensorProperties.__setstate__ = original


def convert(src, out, *extra):
    run_g4("hf2mcore", "--hf", src, "--out", out, "--force", "-q", *extra)
    return out / "iter_0000000"


# hf2mcore's two layouts: the common state inside the DCP checkpoint (megatron-core >= 0.19, the default) or in common.pt.
LAYOUTS = {"common-state": (), "common-pt": ("--common-pt",)}
# Every (megatron-core version, layout) that reads; 0.16.1 reads the common state only from common.pt (test below).
READERS = [(v, layout) for v in MCORE_VERSIONS for layout in LAYOUTS if (v, layout) != ("0.16.1", "common-state")]


@pytest.mark.parametrize("oracle,layout", READERS, indirect=["oracle"])
@pytest.mark.parametrize("name", TINY + TOWERS)
def test_megatron_core_plain_load_equals_the_bridge_mapping_of_every_hf_tensor(tmp_path, oracle, layout, name):
    it = convert(TESTDATA / name, tmp_path / "mcore", *LAYOUTS[layout])
    oracle.call("check_plain_load", it, TESTDATA / name)
    assert oracle.call("common_state", it) == COMMON_STATE


@pytest.mark.parametrize("oracle,layout", READERS, indirect=["oracle"])
@pytest.mark.parametrize("name", TINY + TOWERS)
def test_megatron_core_sharded_load_as_the_bridge_requests_it_finds_every_key(tmp_path, oracle, layout, name):
    it = convert(TESTDATA / name, tmp_path / "mcore", *LAYOUTS[layout])
    oracle.call("check_sharded_load", it, TESTDATA / name)


@pytest.mark.parametrize("oracle", ["0.16.1"], indirect=True)
def test_megatron_core_0_16_lists_a_common_state_checkpoint_but_loads_only_with_common_pt(tmp_path, oracle):
    """The default layout keeps the common state inside DCP (megatron-core 0.19's): 0.16.1 lists every tensor but
    its load looks for common.pt (and fails in its own error path); the --common-pt layout is the one it loads."""
    src = TESTDATA / "tiny-26b-a4b"
    it = convert(src, tmp_path / "mcore")
    assert not (it / "common.pt").exists()
    assert oracle.call("tensor_keys", it) == sorted(expected_checkpoint(src)[0])
    for call, args in (("check_plain_load", (it, src)), ("common_state", (it,))):
        with pytest.raises(OracleError, match="iterdir"):  # `checkpoint_dir.iterdir()` on a str, after common.pt
            oracle.call(call, *args)


def test_every_blob_and_side_file_loads_under_torch_weights_only(tmp_path):
    import torch.distributed.checkpoint as dcp
    root = tmp_path / "mcore"
    it = convert(TESTDATA / "tiny-26b-a4b", root)
    reader = dcp.FileSystemReader(str(it))
    md = reader.read_metadata()
    for index, info in md.storage_data.items():
        with open(it / info.relative_path, "rb") as f:
            f.seek(info.offset)
            obj = torch.load(io.BytesIO(f.read(info.length)), weights_only=True)
        if torch.is_tensor(obj):
            assert list(obj.shape) == [c.sizes for c in md.state_dict_metadata[index.fqn].chunks
                                       if list(c.offsets) == list(index.offset)][0] or True
        else:
            assert isinstance(obj, list) and len(obj) == 1, index.fqn
    assert not (it / "common.pt").exists()  # megatron-core 0.19's layout: the common state is a byte item (loaded above)
    for state in (it / "train_state.pt", root / "latest_train_state.pt"):
        ts = torch.load(state, weights_only=True)
        assert ts["step"].dtype == torch.int64 and ts["step"].item() == 0 and ts["do_train"].dtype == torch.bool
    assert (root / "latest_checkpointed_iteration.txt").read_text() == "0"
    assert json.loads((it / "metadata.json").read_text())["sharded_backend"] == "torch_dist"
    # torch's own DCP loader reads every tensor
    sd = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items()
          if hasattr(v, "size")}
    dcp.load(sd, checkpoint_id=str(it))
    expected, *_ = expected_checkpoint(TESTDATA / "tiny-26b-a4b")
    for k, t in expected.items():
        assert torch.equal(sd[k], t), k


def test_release_layout_writes_the_release_directory_and_tracker(tmp_path):
    run_g4("hf2mcore", "--hf", TESTDATA / "tiny-31b", "--out", tmp_path / "m", "--release", "-q")
    assert (tmp_path / "m" / "latest_checkpointed_iteration.txt").read_text() == "release"
    assert (tmp_path / "m" / "release" / ".metadata").exists() and not (tmp_path / "m" / "latest_train_state.pt").exists()


@pytest.mark.parametrize("name,target", [
    ("tiny-26b-a4b", "megatron.bridge.models.gemma_vl.gemma4_vl_provider.Gemma4VLModelProvider"),
    ("tiny-e2b", "megatron.bridge.models.gemma.gemma4_provider.Gemma4DenseProvider"),
    ("tiny-31b", "megatron.bridge.models.gemma_vl.gemma4_vl_provider.Gemma4DenseVLProvider")])
def test_run_config_yaml_parses_and_states_the_bridge_provider_fields(tmp_path, name, target):
    it = convert(TESTDATA / name, tmp_path / "m")
    cfg = yaml.safe_load((it / "run_config.yaml").read_text())
    _, tc, _ = text_config(TESTDATA / name)
    m = cfg["model"]
    assert m["_target_"] == target
    assert m["num_layers"] == tc.num_hidden_layers and m["hidden_size"] == tc.hidden_size
    sliding = tc.per_layer_config[tc.layer_types.index("sliding_attention")]
    full = tc.per_layer_config[tc.layer_types.index("full_attention")]
    assert m["num_attention_heads"] == tc.num_attention_heads and m["num_query_groups"] == sliding.num_key_value_heads
    assert m["kv_channels"] == sliding.head_dim and isinstance(m["layernorm_epsilon"], float)
    assert full.head_dim == m.get("global_head_dim", m.get("global_kv_channels"))
    assert m["layernorm_epsilon"] == tc.rms_norm_eps and m["vocab_size"] == tc.vocab_size
    assert m["tensor_model_parallel_size"] == 1 and m["pipeline_model_parallel_size"] == 1
    assert cfg["checkpoint"]["ckpt_format"] == "torch_dist"
    if "moe" in name or "a4b" in name:
        assert m["num_moe_experts"] == tc.num_experts and m["moe_router_topk"] == tc.top_k_experts
        assert m["transformer_layer_spec"]["_target_"].endswith("gemma4_block_spec")
    else:
        assert m["window_attn_skip_freq"] == [t == "sliding_attention" for t in tc.layer_types]
        assert m["hetereogenous_dist_checkpoint"] == (name == "tiny-e2b")


# Gemma4VLBridge.provider_bridge: getattr(hf_config, field, the VL provider's default).
VL_PROVIDER_FIELDS = {"vision_soft_tokens_per_image": 280, "bos_token_id": 2, "eos_token_id": 1,
                      "image_token_id": 258880, "video_token_id": 258884, "audio_token_id": 258881}


@pytest.mark.parametrize("name", ["tiny-31b"] + TOWERS)
def test_run_config_yaml_states_the_vl_providers_token_ids_of_the_checkpoint(tmp_path, name):
    """Megatron-Bridge's load_model_config builds the provider from run_config.yaml alone: a field left out takes
    the released vocabulary's default (image 258880), wrong for these 128-token checkpoints (image 4)."""
    it = convert(TESTDATA / name, tmp_path / "m")
    m = yaml.safe_load((it / "run_config.yaml").read_text())["model"]
    cfg, _, _ = text_config(TESTDATA / name)
    for field, default in VL_PROVIDER_FIELDS.items():
        assert m[field] == getattr(cfg, field, default), field
    assert m["image_token_id"] == 4 and m["video_token_id"] == 7 and m["audio_token_id"] == 8
    assert m["scatter_embedding_sequence_parallel"] is False
    # MB writes every provider field: a checkpoint without an audio tower states audio_config: null.
    assert (m.get("audio_config") is not None) == (cfg.audio_config is not None) and "audio_config" in m
    assert m["vision_config"]["config_dict"]["use_clipped_linears"] is True or name == "tiny-31b"


def load_strict(path):
    from transformers import AutoConfig, Gemma4ForCausalLM, Gemma4ForConditionalGeneration
    cls = Gemma4ForConditionalGeneration if hasattr(AutoConfig.from_pretrained(path), "text_config") else Gemma4ForCausalLM
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not {k: v for k, v in info.items() if v}, info
    return model.eval()


@pytest.mark.parametrize("name", TINY)
def test_transformers_loads_mcore2hf_output_strictly_with_the_original_logits(tmp_path, name):
    src = TESTDATA / name
    convert(src, tmp_path / "m")
    run_g4("mcore2hf", "--mcore", tmp_path / "m", "--out", tmp_path / "hf", "-q")
    a, b = load_strict(src), load_strict(tmp_path / "hf")
    ids = torch.tensor([[2, 17, 99, 3, 55, 23, 11, 7]])
    with torch.no_grad():
        la, lb = a(input_ids=ids).logits, b(input_ids=ids).logits
    assert torch.equal(la, lb)
    ours, orig = load_hf(tmp_path / "hf"), load_hf(src)
    assert set(ours) == set(orig)
    assert all(torch.equal(ours[k], orig[k]) for k in orig)


def multimodal_input(config):
    """input_ids with an image (and, with an audio tower, an audio clip) of soft tokens, and the tower inputs."""
    g = torch.Generator().manual_seed(0)
    v = config.vision_config
    side = 4  # a 4x4 grid of patches, pooled to side^2 / k^2 soft tokens
    kw = {"pixel_values": torch.rand(1, side * side, 3 * v.patch_size ** 2, generator=g),
          "image_position_ids": torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1)
          .reshape(1, -1, 2)}
    n_image = side * side // v.pooling_kernel_size ** 2
    ids = [2, 17, config.boi_token_id] + [config.image_token_id] * n_image + [config.eoi_token_id, 33]
    types = [0, 0, 0] + [1] * n_image + [0, 0]
    if config.audio_config is not None:
        frames = 16  # two stride-2 convolutions: 4 soft tokens
        kw["input_features"] = torch.randn(1, frames, config.audio_config.subsampling_conv_channels[0], generator=g)
        kw["input_features_mask"] = torch.ones(1, frames, dtype=torch.bool)
        ids += [config.boa_token_id] + [config.audio_token_id] * (frames // 4) + [config.eoa_token_index, 44]
        types += [0] + [3] * (frames // 4) + [0, 0]
    return torch.tensor([ids]), torch.tensor([types]), kw


@pytest.mark.parametrize("name", TOWERS)
def test_transformers_loads_mcore2hf_output_of_tower_checkpoints_strictly_with_the_original_multimodal_logits(tmp_path, name):
    """The clipped towers' 0-d bounds and every other tower tensor survive hf2mcore -> mcore2hf: transformers
    loads the result strictly and the image/audio soft tokens give the original logits bit for bit (the bounds do
    clip here: unbounded towers change these logits)."""
    src = TESTDATA / name
    convert(src, tmp_path / "m")
    run_g4("mcore2hf", "--mcore", tmp_path / "m", "--out", tmp_path / "hf", "-q")
    a, b = load_strict(src), load_strict(tmp_path / "hf")
    ids, types, kw = multimodal_input(a.config)
    with torch.no_grad():
        la = a(input_ids=ids, mm_token_type_ids=types, **kw).logits
        lb = b(input_ids=ids, mm_token_type_ids=types, **kw).logits
        text_only = a(input_ids=ids, mm_token_type_ids=types).logits
    assert torch.equal(la, lb)
    assert not torch.equal(la, text_only), "the soft tokens must reach the logits"
    ours, orig = load_hf(tmp_path / "hf"), load_hf(src)
    assert set(ours) == set(orig)
    assert all(ours[k].dtype == orig[k].dtype and torch.equal(ours[k], orig[k]) for k in orig)


def resave_without(it, out, drop):
    """The checkpoint re-saved by torch.distributed.checkpoint with every tensor and object except `drop`."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata
    md = dcp.FileSystemReader(str(it)).read_metadata()
    sd = {k: io.BytesIO() if isinstance(v, BytesStorageMetadata) else torch.empty(list(v.size), dtype=v.properties.dtype)
          for k, v in md.state_dict_metadata.items() if k not in drop}
    dcp.load(sd, checkpoint_id=str(it))
    dcp.save(sd, checkpoint_id=str(out))
    for f in ("metadata.json", "common.pt", "run_config.yaml", "hf_config.json"):
        if (it / f).exists():  # common.pt only in the --common-pt layout
            shutil.copy(it / f, out / f)


def test_inspect_takes_a_dense_checkpoint_without_the_final_norm_extra_state_as_megatron_bridge_writes_it(tmp_path):
    """Megatron-Bridge 0.6.2's dense model neither requests nor writes decoder.final_layernorm._extra_state
    (megatron-bridge-observed.md): a checkpoint without it is clean; one without a requested object is not."""
    it = convert(TESTDATA / "tiny-31b", tmp_path / "m", "--common-pt")  # the re-save flattens byte items it loaded
    final = "language_model.decoder.final_layernorm._extra_state/shard_0_1"
    resave_without(it, tmp_path / "mb", {final})
    report = json.loads(run_g4("inspect", tmp_path / "mb", "--json", check=False).stdout)
    assert report["ok"], report["problems"]
    qkv = "language_model.decoder.layers.self_attention_global.linear_qkv._extra_state/shard_1_2"
    resave_without(it, tmp_path / "no-qkv", {final, qkv})
    report = json.loads(run_g4("inspect", tmp_path / "no-qkv", "--json", check=False).stdout)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["extra-state"], report["problems"]
    assert qkv in report["problems"][0]["message"]


def test_shared_kv_are_zero_filled_on_import_and_dropped_on_export_unless_the_reference_has_them(tmp_path, megatron):
    run_g4("synth", "--preset", "tiny-e4b", "--with-shared-kv", "--out", tmp_path / "with", "-q")
    run_g4("synth", "--preset", "tiny-e4b", "--out", tmp_path / "without", "-q")
    with_kv, without = load_hf(tmp_path / "with"), load_hf(tmp_path / "without")
    shared = sorted(set(with_kv) - set(without))
    assert shared and all(".self_attn.k_proj." in k or ".self_attn.v_proj." in k or ".k_norm." in k for k in shared)
    for src in ("with", "without"):
        it = convert(tmp_path / src, tmp_path / f"m-{src}", "--common-pt")  # megatron-core 0.16.1 needs common.pt
        expected, *_ = expected_checkpoint(tmp_path / src)
        loaded = megatron.load_plain_tensors(str(it))
        assert all(torch.equal(loaded[k], t) for k, t in expected.items())
    run_g4("mcore2hf", "--mcore", tmp_path / "m-with", "--out", tmp_path / "dropped", "-q")
    assert set(load_hf(tmp_path / "dropped")) == set(without)
    run_g4("mcore2hf", "--mcore", tmp_path / "m-with", "--out", tmp_path / "kept", "--reference-hf", tmp_path / "with", "-q")
    kept = load_hf(tmp_path / "kept")
    assert set(kept) == set(with_kv) and all(torch.equal(kept[k], with_kv[k]) for k in with_kv)


def test_mcore2hf_reads_torch_rechunked_checkpoints_and_reports_a_drifted_v_slot(tmp_path):
    """A checkpoint re-saved by torch.distributed.checkpoint (one chunk per whole stacked tensor, not per
    layer) with the V slot of one K=V layer changed, as training would: exported K is still the original K,
    and mcore2hf warns (pitfalls.md P9)."""
    import torch.distributed.checkpoint as dcp
    src = TESTDATA / "tiny-31b"
    it = convert(src, tmp_path / "m", "--common-pt")  # the re-save keeps tensors only: common.pt is copied
    md = dcp.FileSystemReader(str(it)).read_metadata()
    sd = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items() if hasattr(v, "size")}
    dcp.load(sd, checkpoint_id=str(it))
    _, tc, _ = text_config(src)
    key = "language_model.decoder.layers.self_attention_global.linear_qkv.weight"
    geo = [g for g in __import__("bridge_reference").layer_geometry(tc) if g["full"]][0]
    hd, ng, nq = geo["hd"], geo["ng"], tc.num_attention_heads
    v_rows = slice(nq // ng * hd + hd, nq // ng * hd + 2 * hd)  # V slot of group 0
    sd[key][0, v_rows] += 1.0
    out = tmp_path / "resaved" / "iter_0000000"
    dcp.save(sd, checkpoint_id=str(out))
    for f in ("metadata.json", "common.pt", "hf_config.json"):
        shutil.copy(it / f, out / f)
    proc = run_g4("mcore2hf", "--mcore", out, "--out", tmp_path / "hf")
    assert "V slot" in proc.stderr and "differs from K" in proc.stderr
    ours, orig = load_hf(tmp_path / "hf"), load_hf(src)
    assert set(ours) == set(orig) and all(torch.equal(ours[k], orig[k]) for k in orig)


def test_mcore2hf_reads_a_checkpoint_megatron_core_saved_itself_with_tp_split_shards(tmp_path):
    """megatron-core's own dist_checkpointing.save (megatron_save.py), each layer split in two TP-style shards:
    mcore2hf reassembles them into the original HF tensors."""
    import subprocess
    import sys
    for name in ("tiny-e4b", "tiny-26b-a4b"):
        src = TESTDATA / name
        it = convert(src, tmp_path / f"m-{name}")
        out = tmp_path / f"by-megatron-{name}"
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "megatron_save.py"), src, out], check=True,
                       capture_output=True, cwd=os.path.dirname(__file__))
        assert (out / "common.pt").exists() and (out / ".metadata").exists()
        shutil.copy(it / "hf_config.json", out / "hf_config.json")
        proc = run_g4("mcore2hf", "--mcore", out, "--out", tmp_path / f"hf-{name}")
        assert "warning" not in proc.stderr, proc.stderr  # the optimizer state is skipped silently
        ours, orig = load_hf(tmp_path / f"hf-{name}"), load_hf(src)
        assert set(ours) == set(orig) and all(torch.equal(ours[k], orig[k]) for k in orig), name


SYNTH = [(p, form, dtype, kv) for p in ["tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"]
         for form in ["causal", "conditional"] for dtype in ["bf16", "fp32"] for kv in [False, True]
         if not (kv and p in ("tiny-26b-a4b", "tiny-31b"))]


@pytest.mark.parametrize("preset,form,dtype,kv", SYNTH)
def test_roundtrip_is_bit_exact_for_every_tiny_preset_form_and_dtype(tmp_path, preset, form, dtype, kv):
    run_g4("synth", "--preset", preset, "--form", form, "--dtype", dtype, "--out", tmp_path / "hf", "-q",
           *(["--with-shared-kv"] if kv else []))
    report = run_g4_json("roundtrip", "--hf", tmp_path / "hf")
    assert report["identical"] and report["tensor_differences"] == [] and report["config_differences"] == []


FULL = [("e2b", 6), ("e4b", 8), ("26b-a4b", 2), ("31b", 2)]


@pytest.mark.skipif(os.environ.get("G4_SKIP_FULL_SIZE") == "1", reason="G4_SKIP_FULL_SIZE=1")
@pytest.mark.parametrize("preset,layers", FULL)
def test_full_size_presets_roundtrip_bit_exact_and_verify_in_fp32_and_bf16(tmp_path, preset, layers):
    run_g4("synth", "--preset", preset, "--layers", layers, "--out", tmp_path / "hf", "-q")
    report = run_g4_json("roundtrip", "--hf", tmp_path / "hf", "--keep", tmp_path / "keep", "--forward")
    assert report["identical"], report["tensor_differences"][:5]
    assert report["verify"]["passed"] and report["verify"]["first_divergent_layer"] is None
    bf16 = run_g4_json("verify", "--hf", tmp_path / "hf", "--mcore", tmp_path / "keep" / "mcore", "--dtype", "bf16")
    assert bf16["passed"] and all(l["top1_agrees"] for l in bf16["logits"])
