"""Minimal torch.distributed helpers: work that outgrows one device runs under ``torchrun``.

Every function also works in a plain process (no ``torchrun``, no process group) as world
size 1, so the same code serves a notebook, ``python -m memlib`` and
``torchrun --nproc_per_node=N -m memlib``.

Sharding is contiguous and deterministic (:func:`shard_indices`), and results merge exactly:
UnitMem accumulators by sum, max and argmax with the accumulator's tie rule (smallest image
id wins); the stages write each rank's shards to files and read all of them back in shard
order after a :func:`barrier` (memlib.stages.run_shards).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from .unitmem import UnitMemAccumulator


def init_from_env(timeout_minutes: float = 120.0) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ...) and return this process's device.

    Backend: ``nccl`` when CUDA is available (each rank on GPU ``LOCAL_RANK``), else ``gloo``.
    Without ``WORLD_SIZE`` (a plain process) or with ``WORLD_SIZE=1`` no group is created and
    the device is ``cuda`` if available, else ``cpu``. Calling it again is harmless.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=timedelta(minutes=timeout_minutes),
            device_id=device if use_cuda else None,
        )
    return device


def shutdown() -> None:
    """Leave the process group, if one was joined (call once at the end of a run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1




def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """The contiguous slice of ``range(n)`` that ``rank`` of ``world_size`` works on.

    Shard r is ``[n*r // W, n*(r+1) // W)``: sizes differ by at most one, shards are disjoint,
    in rank order, and cover ``range(n)`` exactly.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} / world_size {world_size}: expected 0 <= rank < world_size")
    if n < 0:
        raise ValueError(f"n: expected >= 0, got {n}")
    return range(n * rank // world_size, n * (rank + 1) // world_size)




def merge_unitmem_states(states: Iterable[Mapping[str, torch.Tensor]]) -> UnitMemAccumulator:
    """One accumulator from the states of accumulators built on disjoint image shards
    (:meth:`UnitMemAccumulator.state_dict`), folded in the given order."""
    merged = None
    for state in states:
        acc = UnitMemAccumulator.from_state_dict(dict(state))
        merged = acc if merged is None else merged.merge(acc)
    if merged is None:
        raise ValueError("no UnitMem states to merge")
    return merged
