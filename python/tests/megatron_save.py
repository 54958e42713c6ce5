"""Saves, with megatron-core's own dist_checkpointing.save, the Megatron-Bridge tensors of an HF checkpoint
(bridge_reference.py) and an optimizer moment, every layer split into two TP-style shards along dim 0 (QKV, fc1, norms) or dim 1
(linear_proj, fc2): a checkpoint Megatron itself wrote, for mcore2hf to read back.

With --mb, the checkpoint Megatron-Bridge's model saves instead: TP x EP ranks (gloo processes, megatron-core's
parallel_state), each wrapping its rank-local tensors with megatron-core's own sharding code as the model's
sharded_state_dict does (make_sharded_tensors_for_checkpoint: column-parallel qkv/fc1/embedding on dim 0,
row-parallel proj/fc2 on dim 1, the rest replicated; apply_swiglu_sharded_factory: fc1 as separate gate and up
chunks; SequentialMLP/TEGroupedMLP's expert axis and expert-DP replicas), a dense model's vocabulary padded with
zero rows to a multiple of 128 (MB's make_vocab_size_divisible_by), the `_extra_state` objects, and the common state
(checkpoint_version, iteration) that megatron-core stores in common.pt (0.16) or inside DCP as common_state (0.19).
--text-mode drops the `language_model.` prefix and the towers (MB's GEMMA4_CONVERSION_MODE=text).

Run as a script (megatron's saver starts worker processes that re-import __main__):
    python megatron_save.py HF_DIR OUT_DIR [--mb [--tp N] [--ep N] [--text-mode]] [HF_DIR OUT_DIR ...]"""
import argparse
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


def cpu_only(torch):
    """CPU-only run: the saver syncs and broadcasts on the current CUDA device."""
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: "cpu"


COLUMN = ("linear_qkv.weight", "linear_fc1.weight", "word_embeddings.weight")  # TP on dim 0
ROW = ("linear_proj.weight", "linear_fc2.weight")  # TP on dim 1


def mb_tensors(src, text_mode):
    """The bridge mapping's global tensors and `_extra_state` keys as MB's model holds them."""
    import torch
    from bridge_reference import expected_checkpoint
    tensors, extra, *_ = expected_checkpoint(src)
    dense = not any(".experts." in k for k in tensors)
    for key, t in tensors.items():
        # Gemma4DenseProvider.provide pads to make_vocab_size_divisible_by (128); the MoE provider (GPTModelProvider,
        # should_pad_vocab False) does not pad
        if key.endswith("embedding.word_embeddings.weight") and dense:
            rows = -(-t.shape[0] // 128) * 128
            tensors[key] = torch.cat([t, torch.zeros(rows - t.shape[0], *t.shape[1:], dtype=t.dtype)])
    if text_mode:
        tensors = {k[len("language_model."):]: t for k, t in tensors.items() if k.startswith("language_model.")}
        extra = {k[len("language_model."):] for k in extra if k.startswith("language_model.")}
    return tensors, extra


def rank_sharded_state_dict(tensors, extra, ps):
    """This rank's sharded state dict, built with megatron-core's sharding helpers."""
    import torch
    from megatron.core.transformer.mlp import apply_swiglu_sharded_factory
    from megatron.core.transformer.utils import make_sharded_tensors_for_checkpoint
    tp, tp_rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    ep, ep_rank = ps.get_expert_model_parallel_world_size(), ps.get_expert_model_parallel_rank()
    expert_groups = dict(tp_group=ps.get_expert_tensor_parallel_group(), dp_cp_group=ps.get_expert_data_parallel_group())
    sd = {}
    for key, t in tensors.items():
        module, param = key.rsplit(".", 1)
        experts = ".experts.experts." in key
        stacked = "decoder.layers." in key and not key.split("decoder.layers.")[1][0].isdigit()
        axis = 0 if key.endswith(COLUMN) else 1 if key.endswith(ROW) else None
        axis_map = {} if axis is None else {param: axis}
        layers = range(t.shape[0]) if stacked else [None]
        n_experts = t.shape[1] if experts else 1
        local_experts = range(ep_rank * n_experts // ep, (ep_rank + 1) * n_experts // ep) if experts else [None]
        for l in layers:
            for e in local_experts:
                x, offsets = t, []
                if l is not None:
                    x, offsets = x[l], [(0, l, t.shape[0])]
                if e is not None:
                    x, offsets = x[e], offsets + [(1, e, n_experts)]
                gated = key.endswith("linear_fc1.weight")
                if axis is not None:
                    parts = x.chunk(2) if gated else [x]  # the TP rank holds [gate_r; up_r]
                    x = torch.cat([p.chunk(tp, axis)[tp_rank] for p in parts], axis)
                sh = make_sharded_tensors_for_checkpoint({param: x.clone()}, module + ".", axis_map, tuple(offsets),
                                                         **(expert_groups if experts else {}))
                [(name, ten)] = sh.items()
                if gated:
                    ten = apply_swiglu_sharded_factory(ten, tuple(offsets))
                sd[f"{name}#{l}#{e}"] = ten
    for key in extra:
        base, shard = key.split("/shard_")
        offset, shape = (list(map(int, x.split("."))) for x in shard.split("_"))
        # megatron-core names an object by its module's sharded offsets: shard_0_1 when there are none
        offsets = () if shape == [1] else tuple((a, o, n) for a, (o, n) in enumerate(zip(offset, shape)))
        experts = ".experts.experts." in key
        if experts and not ep_rank * shape[1] // ep <= offset[1] < (ep_rank + 1) * shape[1] // ep:
            continue
        module = base[:-len("._extra_state")]
        sh = make_sharded_tensors_for_checkpoint({"_extra_state": torch.empty(0, dtype=torch.uint8)}, module + ".",
                                                 None, offsets, **(expert_groups if experts else {}))
        [(name, obj)] = sh.items()
        sd[f"{name}#{shard}"] = obj
    return sd


def mb_rank(rank, world, port, args):
    import torch
    import torch.distributed as dist
    warnings.filterwarnings("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cpu_only(torch)
    from megatron.core import dist_checkpointing
    from megatron.core import parallel_state as ps
    ps.initialize_model_parallel(tensor_model_parallel_size=args.tp, expert_model_parallel_size=args.ep)
    for src, out in zip(args.paths[::2], args.paths[1::2]):  # one start-up for several checkpoints
        tensors, extra = mb_tensors(src, args.text_mode)
        sd = rank_sharded_state_dict(tensors, extra, ps)
        sd.update(checkpoint_version=3.0, iteration=0)  # MB's common state
        os.makedirs(out, exist_ok=True)
        dist_checkpointing.save(sd, out, content_metadata={"singleton_local_shards": False,
                                                           "chained_optim_avoid_prefix": True})
        dist.barrier()
    ps.destroy_model_parallel()
    dist.destroy_process_group()


def main_mb(args):
    import multiprocessing
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world = args.tp * args.ep  # data parallel = EP: every expert once, dense tensors replicated over DP
    if world == 1:
        return mb_rank(0, 1, port, args)
    ranks = [multiprocessing.get_context("spawn").Process(target=mb_rank, args=(r, world, port, args)) for r in range(world)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join()
    if any(p.exitcode for p in ranks):
        sys.exit(f"a rank failed: exit codes {[p.exitcode for p in ranks]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+", help="HF_DIR OUT_DIR pairs")
    parser.add_argument("--mb", action="store_true")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--ep", type=int, default=1)
    parser.add_argument("--text-mode", action="store_true")
    a = parser.parse_args()
    if a.mb:
        main_mb(a)
    else:
        for src, out in zip(a.paths[::2], a.paths[1::2]):
            main(src, out)
