"""Shared fixtures for the oracle suite: the g4convert binary, and helpers to run it."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "testdata"
TINY = ["tiny-e2b", "tiny-e4b", "tiny-26b-a4b", "tiny-31b"]
# Conditional checkpoints with vision (and audio) towers whose linears are clipped (0-d clip bounds).
TOWERS = ["tiny-e4b-vla", "tiny-26b-a4b-vl"]


def g4convert_path():
    return os.environ.get("G4CONVERT", str(ROOT / "build" / "g4convert"))


def run_g4(*args, check=True):
    proc = subprocess.run([g4convert_path(), *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"g4convert {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_g4_json(*args):
    return json.loads(run_g4(*args, "--json").stdout)


# The megatron-core versions the checkpoint tests read with: the venv's own, and the tree bin/pyenv adds for 0.19.
MCORE_VERSIONS = ["0.16.1", "0.19.2"]


def mcore_tree(version):
    """The directory to put first on PYTHONPATH for `version` (None: the venv's own megatron-core)."""
    if version == "0.16.1":
        return None
    return subprocess.run([str(ROOT / "bin" / "pyenv"), "--mcore-0.19"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="session")
def oracles():
    """One worker process per megatron-core version, started on first use and kept for the session."""
    from mcore_oracle import Oracle
    workers = {}

    def get(version):
        if version not in workers:
            workers[version] = Oracle(mcore_tree(version))
            assert workers[version].version == version
        return workers[version]
    yield get
    for w in workers.values():
        w.close()


@pytest.fixture
def oracle(request, oracles):
    """The worker importing megatron-core `request.param` (mcore_oracle.py); parametrize indirectly."""
    return oracles(request.param)


@pytest.fixture(scope="session")
def presets():
    return {p["name"]: p for p in run_g4_json("presets")}
