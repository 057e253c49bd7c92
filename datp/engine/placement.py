"""Where a training run runs: its process (and torchrun group) and device, the model placed and
wrapped for it with its optimizer and gradient scaler, this process's loaders, the run folder held.

Dimension key: B videos.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from datp.config import TrainConfig
from datp.data.build import DataBundle
from datp.data.seeded import EpochKeys, SeededItems
from datp.distributed import (
    DistributedContext,
    EpochShardSampler,
    init_distributed,
    largest,
    process_device,
)
from datp.engine.inference import prepare_device, resolve_device, shard
from datp.engine.optimizer import OptimizerSettings, make_optimizer
from datp.engine.run_folder import RunFolderLock
from datp.engine.stop_signals import ignore_stop_signals
from datp.errors import InputError, UserError
from datp.run_state import RunState


def start_process(settings: TrainConfig) -> tuple[torch.device, DistributedContext]:
    """This process's device and its torchrun group (one process: a context that is off)."""
    device = resolve_device(settings.device)
    context = init_distributed(device.type,
                               timeout_minutes=settings.distributed_timeout_minutes)
    device = process_device(device, context)
    prepare_device(device, settings.amp)
    return device, context


@dataclass
class Placed:
    """The model where it runs, and what steps it."""

    device: torch.device
    context: DistributedContext
    model: nn.Module
    trained: nn.Module
    """``model`` as it is stepped: wrapped by DistributedDataParallel and torch.compile."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    def load(self, state: RunState) -> None:
        """The parameters, optimizer and scaler states of a checkpoint to resume from."""
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        if state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)


@dataclass
class Loaders:
    """The training items (seeded per item) in the sampler's order, and the test shard."""

    items: SeededItems
    sampler: EpochShardSampler
    generator: torch.Generator
    """What the training loader draws its randomness from, seeded at every epoch."""
    train: DataLoader
    test: DataLoader | None
    steps_per_epoch: int


def steps_per_epoch(settings: TrainConfig, *, shard: int, videos: int) -> int:
    """Steps in an epoch of ``shard`` videos (this process's share of the ``videos`` of the
    training split); refuses a split smaller than one batch per process."""
    steps = shard // settings.batch_size
    if steps < 1:  # refused before the run folder is made
        raise InputError(
            f"the training split has {videos} videos, fewer than one batch of "
            f"{settings.batch_size} per process; lower train.batch_size"
        )
    if settings.max_steps_per_epoch:
        steps = min(steps, settings.max_steps_per_epoch)
    return steps


def place(model: nn.Module, settings: TrainConfig, optimizer: OptimizerSettings, *,
          device: torch.device, context: DistributedContext) -> Placed:
    """``model`` on ``device`` (channels-last if asked), its optimizer and gradient scaler."""
    model = model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
    return Placed(device=device, context=context, model=model, trained=model,
                   optimizer=optimizer, scaler=scaler)


def wrapped(
    model: nn.Module, settings: TrainConfig, context: DistributedContext, device: torch.device
) -> nn.Module:
    """``model`` as it is stepped: under DistributedDataParallel (torchrun), compiled."""
    trained: nn.Module = model
    if context.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if settings.compile is True or (settings.compile == "auto" and device.type == "cuda"):
        trained = torch.compile(trained)
    return trained


def open_loaders(
    data: DataBundle, settings: TrainConfig, sampler: EpochShardSampler, steps: int, *,
    context: DistributedContext, device: torch.device, ignore: Sequence[int],
) -> Loaders:
    """The training loader (in ``sampler``'s order) and the test loader (this process's shard);
    their workers ignore the signals ``ignore``."""
    t = settings
    items = SeededItems(data.train, seed=t.seed)
    generator = torch.Generator()
    worker_init = functools.partial(ignore_stop_signals, ignore)
    # Workers are kept across epochs (no fork, readers kept open): the epoch travels with each
    # key (EpochKeys), so each item is the one a freshly forked worker would load.
    kept = data.workers > 0
    train_loader = DataLoader(
        items, batch_size=t.batch_size, sampler=EpochKeys(sampler),
        num_workers=data.workers, collate_fn=data.collate, drop_last=True,
        pin_memory=device.type == "cuda", generator=generator,
        persistent_workers=kept, worker_init_fn=worker_init,
    )
    test_loader = None
    if data.test is not None:  # every process evaluates its shard of the test split
        test_loader = DataLoader(
            shard(data.test, context), batch_size=data.test_batch_size, shuffle=False,
            num_workers=data.workers, collate_fn=data.collate,
            pin_memory=device.type == "cuda", worker_init_fn=worker_init,
            persistent_workers=kept,
        )
    return Loaders(items=items, sampler=sampler, generator=generator, train=train_loader,
                   test=test_loader, steps_per_epoch=steps)


def hold(run_dir: Path, context: DistributedContext, device: torch.device) -> RunFolderLock | None:
    """The run folder's lock, taken by the main process; under torchrun every process refuses
    when it is held by another run."""
    lock, refusal = None, None
    if context.is_main:
        try:
            lock = RunFolderLock.take(run_dir)
        except UserError as error:
            refusal = error
    if largest(int(refusal is not None), context, device):
        raise refusal or InputError(f"{run_dir}: the main process could not hold it")
    return lock
