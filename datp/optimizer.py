"""The optimizer and the learning-rate schedule of a training run (TSN's recipe by default).

Weight decay on weights only, not on biases and normalization parameters; the pooling module's
parameters (DATP's auxiliary net) at their own learning-rate factor; linear warm-up, then a
step or cosine schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from datp.config import OptimizerKind, ScheduleKind
from datp.errors import InputError


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
            "lr_factor": t.pooling_lr_factor if in_pooling else 1.0,
            "lr": t.lr * (t.pooling_lr_factor if in_pooling else 1.0),
        }
        for (in_pooling, decays), params in groups.items()
    ]
    if t.kind == "sgd":
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum)
    if t.kind == "adamw":
        return torch.optim.AdamW(param_groups, lr=t.lr)
    raise InputError(f"train.optimizer must be 'sgd' or 'adamw', got {t.kind!r}")


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
        if self.kind == "step":
            return 0.1 ** sum(epoch >= boundary for boundary in self.lr_steps)
        if self.kind == "cosine":
            span = max(self.epochs - self.warmup_epochs, 1e-9)
            progress = min((epoch - self.warmup_epochs) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise InputError(f"train.schedule must be 'step' or 'cosine', got {self.kind!r}")
