"""What hf2mcore writes besides the weights, checked with torch itself (issue 10): the common state stored the way
megatron-core 0.19.2 stores it (a DCP byte item read back with torch.distributed.checkpoint, as its
load_common_state_dict does) equal to the older common.pt, Megatron-Bridge 0.6.2's train-state dtypes, and
--pad-vocab's zero rows (loaded by torch's DCP reader)."""
import io
import json
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml

from conftest import TESTDATA, run_g4

warnings.filterwarnings("ignore")


def convert(src, out, *extra):
    run_g4("hf2mcore", "--hf", src, "--out", out, "-q", *extra)
    return out / "iter_0000000"


def common_state_item(it):
    """megatron-core 0.19.2's load_common_state_dict without common.pt: the BytesIO of
    ShardedObject('common_state', None, (1,), (0,)).unique_key loaded by DCP, then torch.load(weights_only)[0]."""
    key = "common_state/shard_0_1"
    sd = {key: io.BytesIO()}
    dcp.load(sd, storage_reader=dcp.FileSystemReader(str(it)), no_dist=True)
    loaded = sd[key]
    if isinstance(loaded, io.BytesIO):  # torch's planner may hand back the bytes or (2.x) the unpickled object
        loaded.seek(0)
        loaded = torch.load(loaded, weights_only=True)
    assert isinstance(loaded, list) and len(loaded) == 1
    return loaded[0]


@pytest.mark.parametrize("name", ["tiny-31b", "tiny-26b-a4b"])
def test_the_default_common_state_item_unpickles_to_the_dict_common_pt_holds(tmp_path, name):
    it = convert(TESTDATA / name, tmp_path / "dcp")
    old = convert(TESTDATA / name, tmp_path / "pt", "--common-pt")
    assert not (it / "common.pt").exists()
    assert json.loads((it / "metadata.json").read_text()) == {"sharded_backend": "torch_dist", "sharded_backend_version": 1}
    md = dcp.FileSystemReader(str(it)).read_metadata()
    assert type(md.state_dict_metadata["common_state/shard_0_1"]).__name__ == "BytesStorageMetadata"
    common = torch.load(old / "common.pt", weights_only=True)
    assert common_state_item(it) == common == {
        "checkpoint_version": 3.0, "iteration": 0,
        "content_metadata": {"singleton_local_shards": False, "chained_optim_avoid_prefix": True}}


def test_common_pt_writes_the_older_layout_without_the_dcp_item(tmp_path):
    it = convert(TESTDATA / "tiny-e4b", tmp_path / "pt", "--common-pt")
    assert json.loads((it / "metadata.json").read_text()) == {
        "sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}
    md = dcp.FileSystemReader(str(it)).read_metadata()
    assert not [k for k in md.state_dict_metadata if k.startswith("common_state")]
    # roundtrip --keep writes its intermediate checkpoint in the layout asked for
    run_g4("roundtrip", "--hf", TESTDATA / "tiny-e4b", "--keep", tmp_path / "keep", "--common-pt", "-q")
    assert (tmp_path / "keep" / "mcore" / "iter_0000000" / "common.pt").exists()


def test_train_state_has_megatron_bridge_0_6_2s_dtypes(tmp_path):
    root = tmp_path / "m"
    it = convert(TESTDATA / "tiny-31b", root)
    want = {"step": torch.int64, "consumed_train_samples": torch.int64, "skipped_train_samples": torch.int64,
            "consumed_valid_samples": torch.int64, "floating_point_operations_so_far": torch.float64,
            "do_train": torch.bool, "do_valid": torch.bool, "do_test": torch.bool}
    for path in (it / "train_state.pt", root / "latest_train_state.pt"):
        ts = torch.load(path, weights_only=True)
        assert list(ts) == list(want), path
        for k, dtype in want.items():
            assert ts[k].dtype == dtype and ts[k].dim() == 0 and ts[k].item() == 0, (path, k)


def load_dcp_tensor(it, key):
    md = dcp.FileSystemReader(str(it)).read_metadata()
    v = md.state_dict_metadata[key]
    sd = {key: torch.empty(list(v.size), dtype=v.properties.dtype)}
    dcp.load(sd, checkpoint_id=str(it))
    return sd[key]


def untied(src, dst):
    """`src` with an untied lm_head of its own (the embedding, changed), saved by safetensors."""
    import shutil
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    files = sorted(dst.glob("*.safetensors"))
    tensors = load_file(files[0])
    emb = tensors["model.language_model.embed_tokens.weight"]
    tensors["lm_head.weight"] = (emb.float() * -0.5 + 0.25).to(emb.dtype)
    save_file(tensors, files[0], metadata={"format": "pt"})
    index = dst / "model.safetensors.index.json"
    if index.exists():
        j = json.loads(index.read_text())
        j["weight_map"]["lm_head.weight"] = files[0].name
        index.write_text(json.dumps(j))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["tie_word_embeddings"] = cfg["text_config"]["tie_word_embeddings"] = False
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("n", [1, 96, 128, 256])
@pytest.mark.parametrize("tied", [True, False])
def test_pad_vocab_appends_zero_rows_to_the_embedding_and_an_untied_head(tmp_path, n, tied):
    from safetensors.torch import load_file
    src = TESTDATA / "tiny-e4b" if tied else untied(TESTDATA / "tiny-e4b", tmp_path / "untied")
    it = convert(src, tmp_path / "m", "--pad-vocab", str(n))
    hf = {}
    for f in src.glob("*.safetensors"):
        hf.update(load_file(f))
    rows = -(-128 // n) * n
    pairs = [("language_model.embedding.word_embeddings.weight", "model.language_model.embed_tokens.weight")]
    if not tied:
        pairs.append(("language_model.output_layer.weight", "lm_head.weight"))
    for key, name in pairs:
        t = load_dcp_tensor(it, key)
        assert t.shape == (rows, hf[name].shape[1]), key
        assert torch.equal(t[:128], hf[name]) and not t[128:].any(), key
    ple = load_dcp_tensor(it, "language_model.per_layer_embedding.weight")
    assert torch.equal(ple, hf["model.language_model.embed_tokens_per_layer.weight"])  # never padded
    run_config = yaml.safe_load((it / "run_config.yaml").read_text())
    assert run_config["model"]["make_vocab_size_divisible_by"] == n


@pytest.mark.parametrize("bad", ["0", "-4", "x", "2.5", "1048577"])
def test_pad_vocab_refuses_a_bad_multiple_with_one_line(tmp_path, bad):
    proc = run_g4("hf2mcore", "--hf", TESTDATA / "tiny-31b", "--out", tmp_path / "m", "--pad-vocab", bad, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--pad-vocab" in proc.stderr, proc.stderr
    assert not (tmp_path / "m").exists()
