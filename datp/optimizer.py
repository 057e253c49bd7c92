"""The optimizer and the learning-rate schedule of a training run (TSN's recipe by default).

Weight decay on weights only, not on biases and normalization parameters; the pooling module's
parameters (DATP's auxiliary net) at their own learning-rate factor; linear warm-up, then a
step or cosine schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from datp.config import Config
from datp.errors import InputError


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """TSN's SGD (momentum) or AdamW. Weight decay on weights, not on biases and norm layers;
    the pooling module's parameters learn at ``lr * pooling_lr_factor``."""
    t = config.train
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
    if t.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=t.lr)
    raise InputError(f"train.optimizer must be 'sgd' or 'adamw', got {t.optimizer!r}")


def learning_rate_factor(config: Config, step: int, steps_per_epoch: int) -> float:
    """Factor on the base learning rate at a global step: linear warm-up, then step or cosine."""
    t = config.train
    epoch = step / steps_per_epoch
    if t.warmup_epochs and epoch < t.warmup_epochs:
        return (step + 1) / (t.warmup_epochs * steps_per_epoch)
    if t.schedule == "step":
        return 0.1 ** sum(epoch >= boundary for boundary in t.lr_steps)
    if t.schedule == "cosine":
        span = max(t.epochs - t.warmup_epochs, 1e-9)
        progress = min((epoch - t.warmup_epochs) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise InputError(f"train.schedule must be 'step' or 'cosine', got {t.schedule!r}")
