"""Evaluation of a checkpoint: the paper's test schemes (Table 4), metrics and the report folder.

Dimension key: V videos, N segments, C classes, K Gaussians.

Test schemes (paper Sec. 4.3, Table 4):

    datp  the network with the pooling it was trained with, N test segments
    p1    the network with a random mixture of 2 Gaussians per video instead of its pooling
    p2    a DATP-trained network, average of per-segment softmax scores over 25 segments
    p3    an average-trained network, the same average over 25 segments
    tsn   TSN's test: 25 segments x 10 crops, average pooling

Per-video results are saved as ``scores.pt`` (a dict of tensors and lists, readable with
``weights_only=True``) so that streams can be fused later (:mod:`datp.engine.fusion`). Videos that
could not be read (with ``data.skip_bad_videos``) are listed in ``skipped.txt`` and counted in
``metrics.json`` (``skipped_videos``); the metrics are over the videos that could be read.
``metrics.json`` and ``scores.pt`` carry the evaluation's protocol (:mod:`datp.engine.protocol`).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from datp.config import TestScheme
from datp.distributed import init_distributed, process_device, shutdown
from datp.engine.build import build_test_dataset, evaluation_plan, model_from_checkpoint
from datp.engine.inference import Collected, collect_sharded, core_model, resolve_device, shard
from datp.engine.protocol import evaluation_protocol
from datp.engine.visualize import plot_confusion
from datp.errors import InputError
from datp.pooling.baselines import AveragePooling, RandomGaussianPooling
from datp.scoring import confusion_from_scores, evaluation_metrics, per_class_accuracy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scheme:
    segments: int | None
    """N at test time (None: the config's test_segments)."""
    crops: int | None
    """Crops per video (None: the config's test_crops)."""
    pooling: str
    """as_trained | random_gaussians | average."""
    requires: str | None = None
    """The pooling the checkpoint must have been trained with, if the scheme names one."""


SCHEMES: dict[TestScheme, Scheme] = {
    "datp": Scheme(segments=None, crops=None, pooling="as_trained"),
    "p1": Scheme(segments=None, crops=None, pooling="random_gaussians", requires="datp"),
    "p2": Scheme(segments=25, crops=None, pooling="average", requires="datp"),
    "p3": Scheme(segments=25, crops=None, pooling="average", requires="average"),
    "tsn": Scheme(segments=25, crops=10, pooling="average"),
}


def apply_scheme(
    model: nn.Module, scheme_name: str, trained_pooling: str, *, seed: int = 0
) -> nn.Module:
    """Swap the model's pooling for the one the scheme tests with (in place); returns the model."""
    if scheme_name not in SCHEMES:
        raise InputError(f"unknown test scheme {scheme_name!r}; choose one of {', '.join(SCHEMES)}")
    scheme = SCHEMES[scheme_name]
    if scheme.requires is not None and trained_pooling != scheme.requires:
        raise InputError(
            f"scheme {scheme_name} tests a network trained with {scheme.requires} pooling, but "
            f"this checkpoint was trained with {trained_pooling} pooling"
        )
    core = core_model(model)
    if scheme.pooling == "random_gaussians":
        core.pooling = RandomGaussianPooling(num_gaussians=2, pool=core.pooling.pool, seed=seed)
    elif scheme.pooling == "average":
        # The paper averages per-segment softmax scores (P2, P3) as TSN does at test time.
        core.pooling = AveragePooling(pool="probabilities")
    return model


def write_report(
    collected: Collected,
    classes: list[str],
    out_dir: Path,
    *,
    pool: str,
    protocol: dict[str, Any] | None = None,
    confusion_figure: bool = False,
) -> dict[str, Any]:
    """metrics.json, per_class.csv, confusion.csv, scores.pt, skipped.txt when videos were
    skipped, and confusion.png with ``confusion_figure``, in ``out_dir``; returns the metrics.
    ``protocol`` (the record of :func:`datp.engine.protocol.evaluation_protocol`) goes into
    metrics.json and scores.pt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluation_metrics(collected.log_probs, collected.labels,
                                 videos=len(collected.videos),
                                 skipped_videos=len(collected.skipped))
    if protocol is not None:
        metrics["protocol"] = protocol
    confusion = confusion_from_scores(collected.log_probs, collected.labels)
    per_class = per_class_accuracy(confusion)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with (out_dir / "per_class.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "videos", "accuracy"])
        for name, total, accuracy in zip(
            classes, confusion.sum(1).tolist(), per_class.tolist(), strict=True
        ):
            writer.writerow([name, total, "" if total == 0 else f"{accuracy:.6f}"])
    with (out_dir / "confusion.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, confusion.tolist(), strict=True):
            writer.writerow([name, *row])
    skipped_file = out_dir / "skipped.txt"
    if collected.skipped:
        skipped_file.write_text("".join(f"{line}\n" for line in collected.skipped))
    else:
        skipped_file.unlink(missing_ok=True)
    torch.save({**collected.to_dict(classes, pool), "protocol": protocol}, out_dir / "scores.pt")
    if confusion_figure:
        plot_confusion(confusion, classes, out_dir / "confusion.png")
    return metrics


class Evaluation(NamedTuple):
    metrics: dict[str, Any]
    """top1, top5, mean_class_accuracy, videos, skipped_videos, protocol, scheme, segments,
    crops."""
    collected: Collected
    classes: list[str]


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    scheme: str = "datp",
    segments: int | None = None,
    crops: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: Path | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    confusion_figure: bool = False,
) -> Evaluation:
    """Evaluate a training checkpoint under a test scheme; writes the report when ``out_dir`` is
    given. Under torchrun every process evaluates its shard of the test split and returns the
    gathered result, and the first one writes the report, the same as one process would.
    ``overrides`` change the saved config (e.g. ``data.root=...`` on another machine);
    ``segments`` and ``crops`` replace the scheme's. ``progress(done, total)`` counts videos.
    ``confusion_figure`` draws the report's confusion matrix too (confusion.png)."""
    from torch.utils.data import DataLoader

    if scheme not in SCHEMES:
        raise InputError(f"unknown test scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    chosen = SCHEMES[scheme]
    model, config, classes, flow_extraction = model_from_checkpoint(
        checkpoint,
        overrides=overrides,
        segments=segments if segments is not None else chosen.segments,
        crops=crops if crops is not None else chosen.crops,
        batches=True,
    )
    plan = evaluation_plan(config)
    apply_scheme(model, scheme, plan.trained_pooling, seed=seed)
    device = resolve_device(plan.device)
    joined = dist.is_available() and dist.is_initialized()
    context = init_distributed(device.type, timeout_minutes=plan.distributed_timeout_minutes)
    try:
        device = process_device(device, context)
        model.to(device)
        dataset, collate = build_test_dataset(config, classes=classes)
        loader = DataLoader(  # under torchrun every process evaluates its shard
            shard(dataset, context),
            batch_size=plan.batch_size,
            num_workers=plan.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        collected = collect_sharded(model, loader, device, plan.amp, context,
                                    progress=progress if context.is_main else None)
    finally:
        if not joined:
            shutdown(context)
    if collected.skipped and context.is_main:
        log.warning("%d test videos could not be read and are left out of the metrics: %s",
                    len(collected.skipped), "; ".join(collected.skipped[:3]))
    protocol = evaluation_protocol(checkpoint=Path(checkpoint), data=plan.data, scheme=scheme,
                                   dataset=dataset, skipped=collected.skipped,
                                   flow_extraction=flow_extraction)
    if out_dir is not None and context.is_main:
        metrics = write_report(collected, classes, Path(out_dir), pool=model.pooling.pool,
                               protocol=protocol, confusion_figure=confusion_figure)
    else:
        metrics = evaluation_metrics(collected.log_probs, collected.labels,
                                     videos=len(collected.videos),
                                     skipped_videos=len(collected.skipped))
        metrics["protocol"] = protocol
    metrics.update(scheme=scheme, segments=plan.segments, crops=plan.crops)
    return Evaluation(metrics, collected, classes)
