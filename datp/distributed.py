"""DistributedDataParallel plumbing: process-group set-up under torchrun, each process's device,
the few collectives the loops use (sums, gathers, the largest stop request, barriers), the test
set's shard of each rank, and a resumable sampler.

Under ``torchrun`` the environment names this process's RANK, WORLD_SIZE and LOCAL_RANK; without
it everything here degrades to a single process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str, *, timeout_minutes: float = 120) -> DistributedContext:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), if any.

    ``timeout_minutes`` bounds how long a collective waits: the other ranks wait in a barrier
    while rank 0 evaluates and saves, which on a large test split takes longer than torch's
    default of 10 minutes."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    context = DistributedContext(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device_type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return context


def process_device(device: torch.device, context: DistributedContext) -> torch.device:
    """The device this process runs on: under torchrun on CUDA, ``cuda:LOCAL_RANK``, made the
    current device (NCCL and ``all_gather_object`` put their buffers on the current device), so
    each process of a host takes its own GPU; else ``device`` itself."""
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    return device


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """``values`` summed over every process (a copy; ``values`` itself without torchrun). Every
    process must call it at the same point."""
    if not context.enabled:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_gather(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` without torchrun."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def shard_range(num_items: int, context: DistributedContext) -> range:
    """This process's contiguous share of ``num_items``: shares differ by one item at most,
    nothing is repeated, and concatenated in rank order they give ``range(num_items)``."""
    return range(context.rank * num_items // context.world_size,
                 (context.rank + 1) * num_items // context.world_size)


def largest(value: int, context: DistributedContext, device: torch.device) -> int:
    """The largest of every process's ``value`` (itself without torchrun)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


class EpochShardSampler(Sampler[int]):
    """Indices of one epoch: a permutation drawn from ``(seed, epoch)``, this rank's share of it,
    from position ``start`` on.

    The order depends only on the seed and the epoch, so a resumed run sees the same order, and
    ``start`` lets it skip the batches an interrupted epoch had already used. Every rank gets the
    same number of indices (the permutation is padded by wrapping around), as DDP needs.
    """

    def __init__(
        self, num_items: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        per_rank = -(-self.num_items // self.world_size)
        order += order[: per_rank * self.world_size - len(order)]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return -(-self.num_items // self.world_size) - self.start
