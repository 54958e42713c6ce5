"""run_config.yaml against Megatron-Bridge 0.6.2: our model section holds exactly the dataclass fields of the
provider MB builds (MB instantiates the section with them: a field more is a TypeError, a field less takes the
class default), and mcore2hf rebuilds the HF config from a run_config.yaml written the way MB writes it (its
field names and values, PyYAML safe_dump, block style), with no hf_config.json and no reference."""
import importlib.util
import json
import pathlib

import pytest
import torch
import yaml

from bridge_reference import load_hf, text_config
from conftest import ROOT, TESTDATA, TINY, TOWERS, mcore_tree, run_g4

FIELDS_JSON = TESTDATA / "gen" / "mb-0.6.2-provider-fields.json"
MODULES = {"Gemma4DenseProvider": "megatron.bridge.models.gemma.gemma4_provider",
           "Gemma4ModelProvider": "megatron.bridge.models.gemma.gemma4_provider",
           "Gemma4DenseVLProvider": "megatron.bridge.models.gemma_vl.gemma4_vl_provider",
           "Gemma4VLModelProvider": "megatron.bridge.models.gemma_vl.gemma4_vl_provider"}


def provider_fields():
    return json.loads(FIELDS_JSON.read_text())["classes"]


def provider_class(src):
    cfg, tc, conditional = text_config(src)
    return {(False, False): "Gemma4DenseProvider", (True, False): "Gemma4ModelProvider",
            (False, True): "Gemma4DenseVLProvider", (True, True): "Gemma4VLModelProvider"}[(bool(tc.enable_moe_block), conditional)]


def convert(src, out):
    run_g4("hf2mcore", "--hf", src, "--out", out, "-q")
    return out / "iter_0000000"


def test_the_checked_in_field_list_is_what_the_megatron_bridge_sources_declare():
    # bin/pyenv's 0.19 tree holds both megatron/core (0.19.2) and megatron/bridge (0.6.2) sources.
    tree = pathlib.Path(mcore_tree("0.19.2"))
    assert (tree / "megatron" / "bridge" / "models" / "gemma" / "gemma4_provider.py").exists(), tree
    MB_SOURCES = tree, tree
    spec = importlib.util.spec_from_file_location("gen", ROOT / "testdata" / "gen" / "gen_mb_provider_fields.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.provider_fields(*MB_SOURCES)
    assert fresh["classes"] == provider_fields(), "rerun testdata/gen/gen_mb_provider_fields.py"
    assert not any(fresh["unevaluated"].values()), fresh["unevaluated"]


@pytest.mark.parametrize("name", TINY + TOWERS)
def test_run_config_model_section_has_exactly_the_fields_of_megatron_bridges_provider(tmp_path, name):
    it = convert(TESTDATA / name, tmp_path / "m")
    m = yaml.safe_load((it / "run_config.yaml").read_text())["model"]
    cls = provider_class(TESTDATA / name)
    assert m["_target_"] == f"{MODULES[cls]}.{cls}"
    expected = set(provider_fields()[cls])
    assert set(m) - {"_target_"} - expected == set(), "fields the provider does not have (MB's instantiate fails)"
    assert expected - set(m) == set(), "provider fields left out"


@pytest.mark.parametrize("name", ["tiny-e4b", "tiny-26b-a4b"])
def test_run_config_values_are_what_megatron_bridge_writes_where_they_differ_from_what_the_model_uses(tmp_path, name):
    """megatron-bridge-observed.md: the dense provider keeps TransformerConfig's qk_layernorm false and
    softmax_scale null (its attention forces both), and num_global_query_groups is the HF field (null here)."""
    it = convert(TESTDATA / name, tmp_path / "m")
    m = yaml.safe_load((it / "run_config.yaml").read_text())["model"]
    if "26b" in name:
        assert m["qk_layernorm"] is True and m["softmax_scale"] == 1.0
        assert m["transformer_layer_spec"]["_target_"] == "megatron.bridge.models.gemma.modeling_gemma4._gemma4_block_spec"
    else:
        assert m["qk_layernorm"] is False and m["softmax_scale"] is None and m["num_global_query_groups"] is None
    assert m["attention_backend"] == {"_target_": "megatron.core.transformer.enums.AttnBackend", "_call_": True,
                                      "_args_": [5], "_name_": "auto"}
    assert m["activation_func"] == {"_target_": "megatron.core.activations.fast_gelu", "_call_": False}


def hf_node(config):
    """A PreTrainedConfig as MB 0.6.2's ConfigContainer serialises it: its class, then its fields."""
    if config is None:
        return None
    return {"_target_": f"{type(config).__module__}.{type(config).__qualname__}", **config.to_dict()}


def mb_model_section(src):
    """The model section MB 0.6.2's provider_bridge would produce for `src` (gemma4_bridge.py,
    gemma4_vl_bridge.py), on its class defaults; written here from MB's field names, not from our writer."""
    cfg, tc, conditional = text_config(src)
    cls = provider_class(src)
    m = {"_target_": f"{MODULES[cls]}.{cls}", **provider_fields()[cls]}
    full = tc.per_layer_config[tc.layer_types.index("full_attention")]
    sliding = tc.per_layer_config[tc.layer_types.index("sliding_attention")]
    d = tc.to_dict()  # transformers 5.23 refuses the per-layer attributes on the config itself
    # The released flat field (these configs state the per-layer form only): the K=V layers' KV heads.
    global_kv = full.num_key_value_heads if tc.attention_k_eq_v else d.get("num_global_key_value_heads")
    rope = tc.rope_parameters
    m.update(num_layers=tc.num_hidden_layers, hidden_size=tc.hidden_size, ffn_hidden_size=tc.intermediate_size,
             num_attention_heads=tc.num_attention_heads, num_query_groups=sliding.num_key_value_heads, kv_channels=sliding.head_dim,
             seq_length=tc.max_position_embeddings, vocab_size=tc.vocab_size, layernorm_epsilon=tc.rms_norm_eps,
             attention_k_eq_v=tc.attention_k_eq_v, final_logit_softcapping=tc.final_logit_softcapping, bf16=True)
    if tc.enable_moe_block:
        m.update(window_size=tc.sliding_window, rotary_base=[rope["sliding_attention"]["rope_theta"], rope["full_attention"]["rope_theta"]],
                 softmax_scale=1.0, qk_layernorm=True, global_head_dim=full.head_dim,
                 num_global_key_value_heads=global_kv,
                 global_rotary_percent=rope["full_attention"]["partial_rotary_factor"],
                 interleaved_attn_pattern=[tc.layer_types.index("full_attention"), 1], num_moe_experts=tc.num_experts, moe_router_topk=tc.top_k_experts,
                 moe_ffn_hidden_size=tc.moe_intermediate_size, moe_shared_expert_intermediate_size=tc.intermediate_size,
                 init_method_std=tc.initializer_range, attention_dropout=tc.attention_dropout, add_qkv_bias=tc.attention_bias)
    else:
        m.update(window_size=[tc.sliding_window - 1, 0], window_attn_skip_freq=[t == "sliding_attention" for t in tc.layer_types],
                 global_kv_channels=full.head_dim, num_global_query_groups=global_kv,
                 sliding_window_rope_base=rope["sliding_attention"]["rope_theta"],
                 full_attention_rope_base=rope["full_attention"]["rope_theta"],
                 full_attention_rope_partial_factor=rope["full_attention"]["partial_rotary_factor"],
                 num_kv_shared_layers=tc.num_kv_shared_layers, use_double_wide_mlp=tc.use_double_wide_mlp,
                 per_layer_embed_vocab_size=tc.vocab_size_per_layer_input, per_layer_embed_dim=tc.hidden_size_per_layer_input,
                 hetereogenous_dist_checkpoint=bool(tc.use_double_wide_mlp))
    if conditional:
        m.update(vision_config=hf_node(cfg.vision_config), text_config=hf_node(tc), audio_config=hf_node(cfg.audio_config),
                 vision_soft_tokens_per_image=getattr(cfg, "vision_soft_tokens_per_image", 280),
                 bos_token_id=getattr(cfg, "bos_token_id", 2), eos_token_id=getattr(cfg, "eos_token_id", 1),
                 image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id, audio_token_id=cfg.audio_token_id)
    return m


ARCHITECTURE = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "hidden_activation", "max_position_embeddings", "rms_norm_eps",
                "tie_word_embeddings", "rope_parameters", "sliding_window", "layer_types", "final_logit_softcapping",
                "use_bidirectional_attention", "vocab_size_per_layer_input", "hidden_size_per_layer_input",
                "attention_k_eq_v", "num_kv_shared_layers", "enable_moe_block", "use_double_wide_mlp", "num_experts",
                "top_k_experts", "moe_intermediate_size"]


def architecture(path):
    cfg, tc, conditional = text_config(path)
    d = tc.to_dict()
    out = {k: d.get(k) for k in ARCHITECTURE}
    out["layers"] = [(lc.head_dim, lc.num_key_value_heads) for lc in tc.per_layer_config]
    out["conditional"] = conditional
    for tower in ("vision_config", "audio_config"):
        t = getattr(cfg, tower, None)
        out[tower] = None if t is None else {k: v for k, v in t.to_dict().items() if k != "transformers_version"}
    return out


@pytest.mark.parametrize("name", TINY + TOWERS)
def test_mcore2hf_rebuilds_the_config_from_a_run_config_written_the_way_megatron_bridge_writes_it(tmp_path, name):
    src = TESTDATA / name
    it = convert(src, tmp_path / "m")
    (it / "hf_config.json").unlink()
    doc = {"_target_": "megatron.bridge.training.config.ConfigContainer", "model": mb_model_section(src),
           "checkpoint": {"_target_": "megatron.bridge.training.config.CheckpointConfig", "ckpt_format": "torch_dist",
                          "save_optim": False, "save_rng": False}, "train": None, "dist": None}
    (it / "run_config.yaml").write_text(yaml.safe_dump(doc, default_flow_style=False))
    proc = run_g4("mcore2hf", "--mcore", tmp_path / "m", "--out", tmp_path / "hf")
    assert architecture(tmp_path / "hf") == architecture(src)
    ours, orig = load_hf(tmp_path / "hf"), load_hf(src)
    assert set(ours) == set(orig)
    assert all(torch.equal(ours[k], orig[k]) and ours[k].dtype == orig[k].dtype for k in orig)
    if src.joinpath("config.json").read_text().count("boi_token_id"):
        assert "boi_token_id" in proc.stderr, proc.stderr  # named as not recoverable
