"""A sequence task whose label lives in a short window: the smallest test of temporal pooling.

Dimension key: B sequences, N segments, D feature channels, C classes.

Each sequence has N segments of D-dimensional features. In a window covering ``key_fraction`` of
the sequence, at a random position, the segments carry the prototype of the true class; the other
segments carry noise and, with probability ``decoy_rate``, a weaker prototype of another class.
A per-segment classifier is confidently right only inside the window, and averaging over all
segments lets the decoys vote. This is the paper's premise in its simplest form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datp.pooling import build_pooling, pooled_log_probabilities

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyTask:
    num_classes: int = 8
    num_segments: int = 10
    channels: int = 16
    key_fraction: float = 0.2
    decoy_rate: float = 0.6
    decoy_strength: float = 0.7
    noise: float = 0.6


def make_sequences(task: ToyTask, count: int, *, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Returns features ``[B, N, D]``, labels ``[B]`` and the key-window mask ``[B, N]``."""
    g = torch.Generator().manual_seed(seed)
    fixed = torch.Generator().manual_seed(0)  # the same classes whatever the split seed
    prototypes = torch.randn(task.num_classes, task.channels, generator=fixed)
    prototypes = prototypes / prototypes.norm(dim=-1, keepdim=True) * 2.0  # [C, D]
    n = task.num_segments
    labels = torch.randint(0, task.num_classes, (count,), generator=g)
    window = max(1, round(task.key_fraction * n))
    starts = torch.randint(0, n - window + 1, (count,), generator=g)
    positions = torch.arange(n)[None]  # [1, N]
    key = (positions >= starts[:, None]) & (positions < starts[:, None] + window)  # [B, N]
    # Decoys: another class, shown weaker, outside the window.
    offsets = torch.randint(1, task.num_classes, (count, n), generator=g)
    decoy_class = (labels[:, None] + offsets) % task.num_classes  # [B, N]
    decoy = (torch.rand(count, n, generator=g) < task.decoy_rate) & ~key
    features = task.noise * torch.randn(count, n, task.channels, generator=g)
    features += key[..., None] * prototypes[labels][:, None]
    features += decoy[..., None] * task.decoy_strength * prototypes[decoy_class]
    return features, labels, key


class SegmentClassifier(nn.Module):
    """A per-segment MLP followed by a temporal pooling: ``[B, N, D] -> [B, C]``."""

    def __init__(self, *, channels: int, num_classes: int, pooling: nn.Module) -> None:
        super().__init__()
        self.segment_net = nn.Sequential(
            nn.Linear(channels, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )
        self.pooling = pooling

    def forward(self, features: Tensor):
        logits = self.segment_net(features)  # [B, N, C]
        return self.pooling(logits, features)


def train_and_evaluate(
    task: ToyTask,
    *,
    pooling: str,
    pool: str = "probabilities",
    generator: str = "mog",
    num_gaussians: int = 1,
    train_size: int = 4000,
    test_size: int = 2000,
    epochs: int = 15,
    seed: int = 0,
) -> dict[str, float]:
    """Train one pooling on the task; return test accuracy and how much weight hit the window."""
    torch.manual_seed(seed)
    model = SegmentClassifier(
        channels=task.channels,
        num_classes=task.num_classes,
        pooling=build_pooling(
            kind=pooling,
            num_classes=task.num_classes,
            num_segments=task.num_segments,
            pool=pool,
            aux_input="sequence",
            feature_channels=task.channels,
            generator=generator,
            num_gaussians=num_gaussians,
        ),
    )
    x, y, _ = make_sequences(task, train_size, seed=seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        order = torch.randperm(train_size)
        for start in range(0, train_size, 64):
            idx = order[start : start + 64]
            out = model(x[idx])
            loss = nn.functional.nll_loss(pooled_log_probabilities(out.scores, pool), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        log.debug("%s epoch %d loss %.3f", pooling, epoch, loss.item())
    x_test, y_test, key = make_sequences(task, test_size, seed=seed + 10_000)
    model.eval()
    with torch.no_grad():
        out = model(x_test)
    weights = out.weights.abs() / out.weights.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    return {
        "accuracy": (out.scores.argmax(-1) == y_test).float().mean().item(),
        "weight_in_window": (weights * key).sum(-1).mean().item(),
        "window_share": key.float().mean().item(),
    }


SEQUENCE_VARIANTS: dict[str, dict[str, Any]] = {
    "average": dict(pooling="average", pool="logits"),
    "datp (MoG K=1)": dict(pooling="datp", generator="mog", num_gaussians=1),
    "datp (MoG K=2)": dict(pooling="datp", generator="mog", num_gaussians=2),
}
"""The poolings ``datp demo --sequences`` compares, as settings of :func:`train_and_evaluate`."""


def run_sequence_demo(
    task: ToyTask, out: Path, *, report: Callable[[str, list[dict[str, float]]], None],
    seeds: int = 2,
) -> dict[str, list[dict[str, float]]]:
    """Train each of :data:`SEQUENCE_VARIANTS` on ``task`` with seeds ``0 .. seeds - 1``, call
    ``report(name, runs)`` after each, and keep every run in ``out/sequence_demo.json``."""
    results = {}
    for name, settings in SEQUENCE_VARIANTS.items():
        runs = [train_and_evaluate(task, seed=s, **settings) for s in range(seeds)]
        results[name] = runs
        report(name, runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequence_demo.json").write_text(json.dumps(results, indent=2))
    return results
