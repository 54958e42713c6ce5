#!/usr/bin/env python3
"""Times transformers' forward on a checkpoint for the bench: prints 'seconds tokens' for one forward of
the given token ids (after a warm-up on 8 tokens), in the given dtype, on the CPU, with torch using all cores."""
import json
import pathlib
import sys
import time

import torch
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

path, dtype, ids_file = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ids = torch.tensor(json.loads(pathlib.Path(ids_file).read_text())["input_ids"])
arch = json.loads((path / "config.json").read_text())["architectures"][0]
cls = Gemma4ForConditionalGeneration if arch == "Gemma4ForConditionalGeneration" else Gemma4ForCausalLM
model = cls.from_pretrained(path, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32).eval()
with torch.no_grad():
    model(ids[:, :8], use_cache=False, logits_to_keep=1)
    start = time.perf_counter()
    model(ids, use_cache=False, logits_to_keep=1)
    print(f"{time.perf_counter() - start:.3f} {ids.numel()}")
