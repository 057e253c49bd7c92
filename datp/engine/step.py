"""One training step and the running sums of an epoch's steps, kept on the device.

Dimension key: B videos, N segments, D_in input channels, H, W image size, C classes.

A step never waits for the device: its loss, its correct predictions and whether its loss was
finite stay there as tensors (:class:`Tally`), read by the host once per logging interval.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datp.data.device_decode import EncodedBatch, decode_batch
from datp.distributed import DistributedContext, all_reduce_sum
from datp.engine.inference import forward_batch
from datp.errors import InputError

HOST_READ = "datp.engine.train.host_read"
"""The profiler range around the training loop's one read of the device per logging interval."""


@dataclass(frozen=True)
class StepInfo:
    """Where training stands after a step. ``loss`` and ``accuracy`` are the epoch's running
    means over every process as of the last logging interval (read from the device then, not
    at every step); ``videos_per_second`` counts every process."""

    epoch: int
    step: int
    steps_in_epoch: int
    loss: float
    accuracy: float
    videos_per_second: float
    lr: float


def training_step(
    model: nn.Module,
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp: str = "none",
    clip_grad: float = 0.0,
    weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One optimizer step of ``trained`` (``model`` under its DDP and compile wrappers) on
    ``batch`` (``inputs [B, N, D_in, H, W]``, ``times [B, N]``, ``label [B]``), the step
    ``datp train`` takes. Nothing here waits for the device: returns the batch's mean loss and
    its correct predictions as 0-dim tensors on ``device``, for the caller to read when it
    chooses. ``weight`` scales the loss (0: a step that contributes no gradient, for a process
    whose batch held only unreadable videos while the others step). With amp = "fp16" the
    GradScaler's inf check reads the device once per step (bf16 needs no scaler)."""
    labels = batch["label"].to(device, non_blocking=True)
    log_probs = forward_batch(trained, batch, device, amp).log_probs
    loss = nn.functional.nll_loss(log_probs, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss if weight == 1.0 else loss * weight).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    correct = (log_probs.detach().argmax(-1) == labels).sum()
    return loss.detach(), correct


class Tally:
    """An epoch's running sums of training steps, kept on the device and read from it once per
    logging interval: ``add`` never waits for the device, ``read`` does (once, and under torchrun
    after one all-reduce over the processes).

    What is read: the loss and accuracy over every process since the epoch (or the resumed part
    of it) began, the videos, and whether a loss was NaN or infinite, with the first such step of
    this process.
    """

    def __init__(self, device: torch.device, *, step: int) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(4, dtype=dtype, device=device)
        """loss x videos, correct, videos, non-finite losses."""
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)
        """The step of this process's first non-finite loss (0: none)."""
        self.read_step = step
        """The step (in the epoch) up to which the sums are read."""
        self.step = step
        self.loss = self.accuracy = 0.0
        self.videos = 0

    def add(self, loss: Tensor, correct: Tensor, count: int, *, step: int) -> None:
        """Step ``step``'s (counted from 1 in the epoch, as :class:`StepInfo` counts) mean
        ``loss`` and ``correct`` predictions over ``count`` videos."""
        bad = ~torch.isfinite(loss)
        self.sums += torch.stack([loss.to(self.sums.dtype) * count,
                                  correct.to(self.sums.dtype),
                                  loss.new_full((), count, dtype=self.sums.dtype),
                                  bad.to(self.sums.dtype)])
        self.first_bad = torch.where(bad & (self.first_bad == 0), step, self.first_bad)
        self.step = step

    @property
    def unread(self) -> bool:
        return self.step > self.read_step

    def read(
        self, context: DistributedContext, *, collective: bool = True
    ) -> tuple[int, int] | None:
        """Read the sums (summed over every process when ``collective``: all of them must call
        it together). Returns None when every loss since the last read was finite, else the
        first step read now and the first step with a non-finite loss (this process's, or the
        last step if only another process had one)."""
        sums = all_reduce_sum(self.sums, context) if collective else self.sums
        # The one host read of the interval (named for the profiler, which sees no op in tolist).
        with torch.profiler.record_function(HOST_READ):
            loss_sum, correct, videos, bad, first = torch.cat(
                [sums, self.first_bad.to(sums.dtype).view(1)]
            ).tolist()
        since = self.read_step + 1
        self.read_step = self.step
        self.videos = int(videos)
        self.loss, self.accuracy = loss_sum / max(videos, 1), correct / max(videos, 1)
        if not bad:
            return None
        return since, int(first) if first else self.step


@contextlib.contextmanager
def statistics_kept(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics unchanged by the forward passes inside (momentum 0)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum


def first_clip(batch: dict[str, Any]) -> dict[str, Tensor]:
    """A batch of one clip of zeros shaped like ``batch``'s (copies: the batch is not kept)."""
    inputs = batch["inputs"]
    if isinstance(inputs, EncodedBatch):  # data.decode = "device": its shape once decoded
        inputs = decode_batch(inputs, torch.device("cpu"))
    return {"inputs": torch.zeros_like(inputs[:1]),
            "times": batch["times"][:1].clone(), "label": batch["label"][:1].clone()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite (one read of the device)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def blank_batch(items: Any, collate: Any) -> dict[str, Tensor]:
    """A batch of one clip of zeros shaped like the first readable video of ``items``."""
    collate = collate or torch.utils.data.default_collate
    for index in range(len(items)):
        batch = collate([items[index]])
        if "inputs" in batch:
            return first_clip(batch)
    raise InputError("no video of the training split can be read")
