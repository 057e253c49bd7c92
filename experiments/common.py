"""Shared machinery of the paper's experiments in miniature: train variants over seeds, cache
every result, aggregate mean +- std.

A result is cached in ``<out>/<variant>/seed<k>/result.json`` as soon as it exists, so an
interrupted experiment resumes where it stopped and a finished one only re-aggregates.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("experiments")


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]
    evaluations: tuple[str, ...] = ("datp",)
    """Test schemes to evaluate the trained checkpoint with (datp = as trained)."""


@dataclass
class Grid:
    out: Path
    base_config: Path
    base_overrides: list[str] = field(default_factory=list)
    seeds: Sequence[int] = (0, 1, 2)


def run_variant(grid: Grid, variant: Variant, seed: int, *, data_overrides: Sequence[str] = ()
                ) -> dict[str, Any]:
    """Train one variant for one seed (or read its cached result) and evaluate its schemes."""
    from datp.build import build_data_bundle, build_model
    from datp.config import load_config
    from datp.evaluate import evaluate_checkpoint
    from datp.train import train

    run_dir = grid.out / variant.name / f"seed{seed}"
    cached = run_dir / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    overrides = [*grid.base_overrides, *data_overrides, *variant.overrides, f"train.seed={seed}"]
    config = load_config(grid.base_config, overrides)
    data = build_data_bundle(config)
    model = build_model(config, num_classes=len(data.classes))
    started = time.perf_counter()
    train(config, run_dir=run_dir, data=data, model=model,
          resume=(run_dir / "checkpoints" / "last.pt").exists())
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"variant": variant.name, "seed": seed, "train_seconds": seconds,
                              "overrides": overrides}
    checkpoint = run_dir / "checkpoints" / "last.pt"
    for scheme in variant.evaluations:
        metrics, _ = evaluate_checkpoint(checkpoint, scheme=scheme, seed=seed,
                                         out_dir=run_dir / f"eval_{scheme}", figures=False)
        result[scheme] = {k: v for k, v in metrics.items() if isinstance(v, float)}
    cached.write_text(json.dumps(result, indent=2))
    log.info("%s seed %d: %s (%.0f s)", variant.name, seed, result.get("datp"), seconds)
    return result


def run_grid(grid: Grid, variants: Sequence[Variant], *, data_overrides: Sequence[str] = ()
             ) -> dict[str, list[dict[str, Any]]]:
    return {
        v.name: [run_variant(grid, v, s, data_overrides=data_overrides) for s in grid.seeds]
        for v in variants
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results: dict[str, list[dict[str, Any]]], *, schemes: Sequence[str] = ("datp",),
          metrics: Sequence[str] = ("top1", "mean_class_accuracy"),
          label: Callable[[str], str] = str) -> str:
    """A markdown table of mean +- std (in %) over seeds."""
    columns = [f"{s} {m}" if len(schemes) > 1 else m for s in schemes for m in metrics]
    lines = ["| variant | " + " | ".join(columns) + " | seeds |",
             "|---" * (len(columns) + 2) + "|"]
    for name, runs in results.items():
        cells = []
        for scheme in schemes:
            for metric in metrics:
                values = [100 * r[scheme][metric] for r in runs if scheme in r]
                if values:
                    mean, std = mean_std(values)
                    cells.append(f"{mean:.1f} +- {std:.1f}")
                else:
                    cells.append("n/a")
        lines.append(f"| {label(name)} | " + " | ".join(cells) + f" | {len(runs)} |")
    return "\n".join(lines)
