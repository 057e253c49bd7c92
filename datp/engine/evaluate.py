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
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from datp.choices import TestScheme
from datp.distributed import init_distributed, process_device, shutdown
from datp.engine.inference import (
    Collected,
    collect_sharded,
    core_model,
    prepare_device,
    resolve_device,
    shard,
)
from datp.engine.protocol import evaluation_protocol
from datp.engine.visualize import plot_confusion
from datp.errors import InputError
from datp.io import atomic_write_json, atomic_write_text
from datp.pooling.baselines import AveragePooling, RandomGaussianPooling
from datp.score_file import SCORES, ScoreFile
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


def scheme_views(scheme_name: str) -> Scheme:
    """The scheme of a name; ``InputError`` naming the choices for another name."""
    if scheme_name not in SCHEMES:
        raise InputError(f"unknown test scheme {scheme_name!r}; choose one of {', '.join(SCHEMES)}")
    return SCHEMES[scheme_name]


def apply_scheme(
    model: nn.Module, scheme_name: str, trained_pooling: str, *, seed: int = 0
) -> nn.Module:
    """Swap the model's pooling for the one the scheme tests with (in place); returns the model."""
    scheme = scheme_views(scheme_name)
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
    skipped, and confusion.png with ``confusion_figure``, in ``out_dir``, each written
    atomically; returns the metrics. ``protocol`` (the record of
    :func:`datp.engine.protocol.evaluation_protocol`) goes into metrics.json and scores.pt."""
    metrics = evaluation_metrics(collected.log_probs, collected.labels,
                                 videos=len(collected.videos),
                                 skipped_videos=len(collected.skipped))
    if protocol is not None:
        metrics["protocol"] = protocol
    confusion = confusion_from_scores(collected.log_probs, collected.labels)
    per_class = per_class_accuracy(confusion)
    atomic_write_json(out_dir / "metrics.json", metrics)
    rows = [["class", "videos", "accuracy"]]
    for name, total, accuracy in zip(classes, confusion.sum(1).tolist(), per_class.tolist(),
                                     strict=True):
        rows.append([name, total, "" if total == 0 else f"{accuracy:.6f}"])
    atomic_write_text(out_dir / "per_class.csv", _csv(rows))
    rows = [["true \\ predicted", *classes]]
    rows += [[name, *row] for name, row in zip(classes, confusion.tolist(), strict=True)]
    atomic_write_text(out_dir / "confusion.csv", _csv(rows))
    skipped_file = out_dir / "skipped.txt"
    if collected.skipped:
        atomic_write_text(skipped_file, "".join(f"{line}\n" for line in collected.skipped))
    else:
        skipped_file.unlink(missing_ok=True)
    score_file(collected, classes, pool=pool, protocol=protocol).save(out_dir / SCORES)
    if confusion_figure:
        plot_confusion(confusion, classes, out_dir / "confusion.png")
    return metrics


def score_file(collected: Collected, classes: list[str], *, pool: str,
               protocol: dict[str, Any] | None) -> ScoreFile:
    """What an evaluation keeps per video, as a score file."""
    return ScoreFile(videos=collected.videos, labels=collected.labels, pooled=collected.pooled,
                     classes=classes, log_probs=collected.log_probs, weights=collected.weights,
                     segment_scores=collected.segment_scores, times=collected.times,
                     skipped=collected.skipped, pool=pool, protocol=protocol,
                     mixtures=collected.mixtures)


def _csv(rows: list[list[Any]]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


class Evaluation(NamedTuple):
    metrics: dict[str, Any]
    """top1, top5, mean_class_accuracy, videos, skipped_videos, protocol, scheme, segments,
    crops."""
    collected: Collected
    classes: list[str]


@dataclass
class EvaluationRun:
    """An evaluation of a checkpoint, built whole before it runs
    (``datp.engine.build.evaluation_run``)."""

    checkpoint: Path
    scheme: str
    model: nn.Module
    """The checkpoint's model with the scheme's pooling (:func:`apply_scheme`)."""
    dataset: Dataset
    """The test split at the scheme's segments and crops."""
    collate: Callable
    classes: list[str]
    batch_size: int
    workers: int
    device: str
    amp: str
    timeout_minutes: float
    """How long torchrun processes wait for each other."""
    record: dict[str, Any]
    """How the data were read (``datp.data.build.protocol_record``), for the protocol."""
    flow_extraction: dict | None
    segments: int
    crops: int


def _what_is_evaluated(protocol: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a protocol record that says which evaluation it was: the checkpoint file,
    the scheme and views, the videos, and for a head on features which features (how they
    were made: the same features moved elsewhere are the same evaluation)."""
    if not isinstance(protocol, dict):
        return None
    test, data = protocol.get("test") or {}, protocol.get("data") or {}
    features = data.get("features") or {}
    return {"checkpoint": (protocol.get("checkpoint") or {}).get("path"),
            "scheme": test.get("scheme"), "segments": test.get("segments"),
            "crops": test.get("crops"), "videos": data.get("videos"),
            "modality": protocol.get("modality"),
            "features": {k: v for k, v in features.items() if k != "root"} or None}


def claim_report_folder(out_dir: Path, run: EvaluationRun) -> None:
    """Refuse, in one line, a report folder that holds the report of another evaluation (another
    checkpoint, scheme, views or videos): no evaluation replaces another's report. The same
    evaluation again (the same checkpoint path, a file that may have changed since) rewrites
    its own report."""
    found = [name for name in ("metrics.json", SCORES) if (out_dir / name).is_file()]
    if not found:
        return
    try:
        earlier = json.loads((out_dir / "metrics.json").read_text()).get("protocol")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier is None and (out_dir / SCORES).is_file():
        earlier = ScoreFile.load(out_dir / SCORES).protocol
    record = {"checkpoint": {"path": str(run.checkpoint.resolve())}, "modality":
              run.record["modality"], "data": run.record["data"],
              "test": {"scheme": run.scheme, **run.record["test"]}}
    then, now = _what_is_evaluated(earlier), _what_is_evaluated(record)
    if then == now:
        return
    what = ("of an evaluation that records no protocol" if then is None else
            "of another evaluation (" + "; ".join(
                "features made another way" if key == "features" else
                f"{key} {then.get(key)} / {now[key]}"
                for key in now if then.get(key) != now[key]) + ")")
    raise InputError(f"{out_dir} holds the report {what} ({', '.join(found)}); choose another "
                     "--out, or move that report away")


def evaluate(
    run: EvaluationRun,
    *,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    confusion_figure: bool = False,
) -> Evaluation:
    """Evaluate ``run``; writes the report when ``out_dir`` is given. Under torchrun every
    process evaluates its shard of the test split and returns the gathered result, and the
    first one writes the report, the same as one process would. ``progress(done, total)``
    counts videos. ``confusion_figure`` draws the report's confusion matrix too
    (confusion.png)."""
    from torch.utils.data import DataLoader

    if out_dir is not None:
        claim_report_folder(Path(out_dir), run)  # before the evaluation, not after it
    device = resolve_device(run.device)
    joined = dist.is_available() and dist.is_initialized()
    context = init_distributed(device.type, timeout_minutes=run.timeout_minutes)
    try:
        device = process_device(device, context)
        prepare_device(device, run.amp)
        run.model.to(device)
        loader = DataLoader(  # under torchrun every process evaluates its shard
            shard(run.dataset, context), batch_size=run.batch_size, num_workers=run.workers,
            collate_fn=run.collate, pin_memory=device.type == "cuda",
        )
        collected = collect_sharded(run.model, loader, device, run.amp, context,
                                    progress=progress if context.is_main else None)
    finally:
        if not joined:
            shutdown(context)
    if collected.skipped and context.is_main:
        log.warning("%d test videos could not be read and are left out of the metrics: %s",
                    len(collected.skipped), "; ".join(collected.skipped[:3]))
    protocol = evaluation_protocol(checkpoint=run.checkpoint, scheme=run.scheme,
                                   record=run.record, classes=run.classes,
                                   skipped=collected.skipped,
                                   flow_extraction=run.flow_extraction)
    if out_dir is not None and context.is_main:
        metrics = write_report(collected, run.classes, Path(out_dir),
                               pool=core_model(run.model).pooling.pool, protocol=protocol,
                               confusion_figure=confusion_figure)
    else:
        metrics = evaluation_metrics(collected.log_probs, collected.labels,
                                     videos=len(collected.videos),
                                     skipped_videos=len(collected.skipped))
        metrics["protocol"] = protocol
    metrics.update(scheme=run.scheme, segments=run.segments, crops=run.crops)
    return Evaluation(metrics, collected, run.classes)
