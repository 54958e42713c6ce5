"""Makes the sample reports and plots of docs/verify.md: verify on a clean conversion of testdata/tiny-26b-a4b,
and on the same conversion with the K and V rows of one query group swapped in layer 3 (planted with torch).
Run: $(bin/pyenv)/bin/python python/make_verify_samples.py   (uses build/g4convert)"""
import pathlib
import shutil
import subprocess
import tempfile

import torch
import torch.distributed.checkpoint as dcp

ROOT = pathlib.Path(__file__).resolve().parents[1]
G4 = str(ROOT / "build" / "g4convert")
OUT = ROOT / "docs" / "verify"
SRC = ROOT / "testdata" / "tiny-26b-a4b"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        subprocess.run([G4, "hf2mcore", "--hf", SRC, "--out", tmp / "m", "--common-pt", "-q"], check=True)
        clean = subprocess.run([G4, "verify", "--hf", SRC, "--mcore", tmp / "m", "--report", OUT / "clean-report.json",
                                "--plot", OUT / "clean.svg", "--force"], capture_output=True, text=True)
        (OUT / "clean.txt").write_text(clean.stdout)
        it = tmp / "m" / "iter_0000000"
        md = dcp.FileSystemReader(str(it)).read_metadata()
        sd = {k: torch.empty(list(v.size), dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items() if hasattr(v, "size")}
        dcp.load(sd, checkpoint_id=str(it))
        qkv = sd["language_model.decoder.layers.self_attention_sliding.linear_qkv.weight"]
        k = qkv[2, 64:96].clone()  # layer 3 = sliding rank 2; group 0 rows: q 0-63, k 64-95, v 96-127
        qkv[2, 64:96] = qkv[2, 96:128]
        qkv[2, 96:128] = k
        dcp.save(sd, checkpoint_id=str(tmp / "planted"))
        for f in ("metadata.json", "common.pt", "hf_config.json"):
            shutil.copy(it / f, tmp / "planted" / f)
        planted = subprocess.run([G4, "verify", "--hf", SRC, "--mcore", tmp / "planted", "--report", OUT / "kv-swap-report.json",
                                  "--plot", OUT / "kv-swap.svg", "--force"], capture_output=True, text=True)
        (OUT / "kv-swap.txt").write_text(planted.stdout)


if __name__ == "__main__":
    main()
