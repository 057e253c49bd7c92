"""The optimizer and the learning-rate schedule of a training run (TSN's recipe by default).

Weight decay on weights only, not on biases and normalization parameters; the pooling module's
parameters (DATP's auxiliary net) at their own learning-rate factor; linear warm-up, then a
step or cosine schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from datp.choices import OptimizerKind, ScheduleKind
from datp.errors import InputError

LR_FACTOR = "lr_factor"
"""The parameter-group key of a group's factor on the base learning rate (the pooling's
``pooling_lr_factor``, 1 elsewhere), set here and read by :func:`set_learning_rate` and
:func:`base_learning_rate` only."""


@dataclass(frozen=True)
class OptimizerSettings:
    kind: OptimizerKind
    lr: float
    momentum: float
    weight_decay: float
    pooling_lr_factor: float
    """Learning rate of the pooling module's parameters relative to ``lr``."""


def make_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """TSN's SGD (momentum) or AdamW. Weight decay on weights, not on biases and norm layers;
    the pooling module's parameters learn at ``lr * pooling_lr_factor``."""
    t = settings
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decays = parameter.dim() > 1 and not name.endswith(".bias")
        groups.setdefault((name.startswith("pooling."), decays), []).append(parameter)
    param_groups = [
        {
            "params": params,
            "weight_decay": t.weight_decay if decays else 0.0,
            LR_FACTOR: t.pooling_lr_factor if in_pooling else 1.0,
            "lr": t.lr * (t.pooling_lr_factor if in_pooling else 1.0),
        }
        for (in_pooling, decays), params in groups.items()
    ]
    if t.kind not in OPTIMIZERS:
        raise InputError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                         f"{t.kind!r}")
    return OPTIMIZERS[t.kind](param_groups, t)


OPTIMIZERS: dict[OptimizerKind, Callable[[list, OptimizerSettings], torch.optim.Optimizer]] = {
    "sgd": lambda groups, t: torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum),
    "adamw": lambda groups, t: torch.optim.AdamW(groups, lr=t.lr),
}
"""train.optimizer -> the optimizer over the parameter groups."""


@dataclass(frozen=True)
class Schedule:
    """The learning rate over a run: linear warm-up, then step or cosine decay."""

    kind: ScheduleKind
    epochs: int
    warmup_epochs: int
    lr_steps: Sequence[int]
    """Epochs at which the step schedule divides the learning rate by 10."""

    def factor(self, step: int, steps_per_epoch: int) -> float:
        """Factor on the base learning rate at a global step."""
        epoch = step / steps_per_epoch
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return (step + 1) / (self.warmup_epochs * steps_per_epoch)
        if self.kind not in SCHEDULES:
            raise InputError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got "
                             f"{self.kind!r}")
        return SCHEDULES[self.kind](self, epoch)


def _step_decay(schedule: Schedule, epoch: float) -> float:
    return 0.1 ** sum(epoch >= boundary for boundary in schedule.lr_steps)


def _cosine(schedule: Schedule, epoch: float) -> float:
    span = max(schedule.epochs - schedule.warmup_epochs, 1e-9)
    progress = min((epoch - schedule.warmup_epochs) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES: dict[ScheduleKind, Callable[[Schedule, float], float]] = {
    "step": _step_decay,
    "cosine": _cosine,
}
"""train.schedule -> the factor on the learning rate after warm-up, at a (fractional) epoch."""


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    """Set each parameter group's learning rate for the next step: ``base_lr`` (the config's
    lr times :meth:`Schedule.factor`) times the group's own factor."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group[LR_FACTOR]


def base_learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The ``base_lr`` of the last :func:`set_learning_rate` (read back from the first group)."""
    group = optimizer.param_groups[0]
    return group["lr"] / (group[LR_FACTOR] or 1.0)
