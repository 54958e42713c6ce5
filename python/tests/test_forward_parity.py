"""g4convert's reference forward against live transformers, and the committed goldens against a fresh run
of their generator."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, TESTDATA, run_g4, run_g4_json

sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "testdata" / "gen"))
import make_goldens  # noqa: E402
import parity  # noqa: E402

CASES = [(s, c, d) for s in make_goldens.STRUCTURES for d in make_goldens.DTYPES for c in make_goldens.cases(s)]


@pytest.mark.parametrize("structure,case,dtype", CASES)
def test_forward_matches_live_transformers(tmp_path, structure, case, dtype):
    theirs = parity.theirs_live(structure, case, dtype)
    ours, routing = parity.run_ours(structure, case, dtype, tmp_path)
    row = parity.compare(structure, case, dtype, theirs, ours, routing)
    assert row["pass"], row


def test_goldens_are_what_their_generator_makes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "testdata" / "gen" / "make_goldens.py"), str(tmp_path)], check=True,
                   capture_output=True)
    committed = sorted(p.name for p in (TESTDATA / "goldens").iterdir())
    assert committed == sorted(p.name for p in tmp_path.iterdir())
    for name in committed:
        if name.endswith(".json"):
            assert (tmp_path / name).read_text() == (TESTDATA / "goldens" / name).read_text()
            continue
        old, new = load_file(TESTDATA / "goldens" / name), load_file(tmp_path / name)
        assert old.keys() == new.keys(), name
        for key in old:
            if old[key].is_floating_point():
                # Same versions and inputs; allow only CPU-kernel-level differences between machines.
                assert torch.allclose(old[key], new[key], rtol=1e-5, atol=1e-6), f"{name}: {key}"
            else:
                assert torch.equal(old[key], new[key]), f"{name}: {key}"


def test_forward_cli_dumps_have_transformers_shapes(tmp_path):
    inp = TESTDATA / "goldens" / "input-padded.json"
    run_g4("forward", "--hf", TESTDATA / "tiny-26b-a4b", "--input", inp, "--logits", tmp_path / "l.safetensors",
           "--hidden", tmp_path / "h.safetensors", "--routing", tmp_path / "r.json", "--quiet")
    logits = load_file(tmp_path / "l.safetensors")["logits"]
    assert logits.shape == (2, 10, 128) and logits.dtype == torch.float32
    hidden = load_file(tmp_path / "h.safetensors")
    assert sorted(hidden) == sorted(f"hidden.{i}" for i in range(7))
    assert hidden["hidden.3"].shape == (2, 10, 64)
    routing = json.loads((tmp_path / "r.json").read_text())
    assert [l["layer"] for l in routing["layers"]] == list(range(6))
    assert torch.tensor(routing["layers"][0]["experts"]).shape == (2, 10, 2)
    report = run_g4_json("forward", "--hf", TESTDATA / "tiny-31b", "--ids", "2,17,33", "--top", "3")
    assert len(report["rows"][0]["top"]) == 3 and report["rows"][0]["position"] == 2
    probs = [e["prob"] for e in report["rows"][0]["top"]]
    assert probs == sorted(probs, reverse=True)


def test_forward_errors_are_one_line_and_name_the_problem(tmp_path):
    proc = run_g4("forward", "--hf", TESTDATA / "tiny-31b", "--ids", "2,999", check=False)
    assert proc.returncode == 2 and "token id 999" in proc.stderr and proc.stderr.count("\n") == 1
    (tmp_path / "in.json").write_text('{"input_ids": [[1,2],[3]]}')
    proc = run_g4("forward", "--hf", TESTDATA / "tiny-31b", "--input", tmp_path / "in.json", check=False)
    assert proc.returncode == 2 and "in.json" in proc.stderr
