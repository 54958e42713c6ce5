"""Saves, with megatron-core's own dist_checkpointing.save, the Megatron-Bridge tensors of an HF checkpoint
(bridge_reference.py) and an optimizer moment, every layer split into two TP-style shards along dim 0 (QKV, fc1, norms) or dim 1
(linear_proj, fc2): a checkpoint Megatron itself wrote, for mcore2hf to read back.

Run as a script (megatron's saver starts worker processes that re-import __main__):
    python megatron_save.py HF_DIR OUT_DIR"""
import os
import socket
import sys
import warnings


def main(src, out):
    import torch
    import torch.distributed as dist
    warnings.filterwarnings("ignore")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    # CPU-only run: the saver syncs and broadcasts on the current CUDA device.
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: "cpu"
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor
    from bridge_reference import expected_checkpoint
    expected, *_ = expected_checkpoint(src)
    sharded = {}
    for key, t in expected.items():
        stacked = "decoder.layers." in key and t.dim() >= 2 and not key.split("decoder.layers.")[1][0].isdigit()
        axis = 1 if (key.endswith("linear_proj.weight") or key.endswith("linear_fc2.weight")) and t.dim() - stacked >= 2 else 0
        for i in range(t.shape[0] if stacked else 1):
            x = t[i] if stacked else t
            lead = [(0, i, t.shape[0])] if stacked else []
            if x.dim() >= 1 and x.shape[axis] % 2 == 0 and x.numel() > 1:
                for r, part in enumerate(torch.chunk(x, 2, dim=axis)):
                    sharded[f"{key}#{i}#{r}"] = ShardedTensor.from_rank_offsets(
                        key, part.clone(), *lead, (axis + len(lead), r, 2), prepend_axis_num=len(lead))
            else:
                sharded[f"{key}#{i}"] = ShardedTensor.from_rank_offsets(key, x.clone(), *lead, prepend_axis_num=len(lead))
    # Training state a real Megatron checkpoint carries, which readers must skip: an optimizer moment.
    first = next(iter(expected))
    sharded["optimizer.state.exp_avg"] = ShardedTensor.from_rank_offsets(
        "optimizer.state.exp_avg." + first, torch.zeros_like(expected[first], dtype=torch.float32))
    os.makedirs(out, exist_ok=True)
    dist_checkpointing.save(sharded, out, content_metadata={"singleton_local_shards": False})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
