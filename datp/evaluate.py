"""Evaluation: per-video scores, the paper's test schemes (Table 4), metrics, and stream fusion.

Dimension key: V videos, N segments, C classes, K Gaussians.

Test schemes (paper Sec. 4.3, Table 4):

    datp  the network with the pooling it was trained with, N test segments
    p1    the network with a random mixture of 2 Gaussians per video instead of its pooling
    p2    a DATP-trained network, average of per-segment softmax scores over 25 segments
    p3    an average-trained network, the same average over 25 segments
    tsn   TSN's test: 25 segments x 10 crops, average pooling

Per-video results are saved as ``scores.pt`` (a dict of tensors and lists, readable with
``weights_only=True``) so that streams can be fused later with :func:`fuse`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datp.inference import core_model, forward_batch
from datp.metrics import confusion_matrix, per_class_accuracy, summarize
from datp.pooling.baselines import AveragePooling, RandomGaussianPooling

log = logging.getLogger(__name__)


FUSION_WEIGHTS: dict[str, float] = {"rgb": 1.0, "flow": 1.5}
"""The paper's late-fusion weights by modality (TSN's 1 : 1.5)."""


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


SCHEMES: dict[str, Scheme] = {
    "datp": Scheme(segments=None, crops=None, pooling="as_trained"),
    "p1": Scheme(segments=None, crops=None, pooling="random_gaussians", requires="datp"),
    "p2": Scheme(segments=25, crops=None, pooling="average", requires="datp"),
    "p3": Scheme(segments=25, crops=None, pooling="average", requires="average"),
    "tsn": Scheme(segments=25, crops=10, pooling="average"),
}


@dataclass
class Collected:
    """Everything an evaluation keeps per video, in loader order."""

    videos: list[str]
    labels: Tensor  # [V]
    pooled: Tensor  # [V, C] the pooled vectors ("raw scores")
    log_probs: Tensor  # [V, C]
    weights: list[Tensor]  # V x [N]
    segment_scores: list[Tensor]  # V x [N, C] (empty if the model gives none)
    times: list[Tensor]  # V x [N]

    def to_dict(self, classes: list[str], pool: str) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "labels": self.labels,
            "pooled": self.pooled,
            "log_probs": self.log_probs,
            "weights": self.weights,
            "segment_scores": self.segment_scores,
            "times": self.times,
            "classes": classes,
            "pool": pool,
        }

    @classmethod
    def from_dict(cls, scores: dict[str, Any]) -> Collected:
        """The inverse of :meth:`to_dict` (what ``load_scores`` reads), less classes and pool."""
        return cls(**{f.name: scores[f.name] for f in fields(cls)})


@torch.no_grad()
def collect(
    model: nn.Module, loader: Iterable, device: torch.device, amp: str = "none"
) -> Collected:
    """Run ``model`` over every batch of ``loader`` and keep per-video results."""
    model.eval()
    out = Collected(
        [], torch.empty(0, dtype=torch.long), torch.empty(0), torch.empty(0), [], [], []
    )
    labels, pooled, log_probs = [], [], []
    for batch in loader:
        if batch is None:  # every video of the batch was skipped as unreadable
            continue
        result = forward_batch(model, batch, device, amp)
        labels.append(torch.as_tensor(batch["label"]))
        pooled.append(result.pooled.cpu())
        log_probs.append(result.log_probs.cpu())
        out.weights += list(result.weights.cpu())
        if result.segment_scores is not None:
            out.segment_scores += list(result.segment_scores.cpu())
        out.times += list(batch["times"].float())
        out.videos += [str(v) for v in batch.get("video", [""] * len(labels[-1]))]
    if not labels:
        raise ValueError("the test split yielded no video to evaluate")
    out.labels, out.pooled, out.log_probs = (
        torch.cat(labels),
        torch.cat(pooled),
        torch.cat(log_probs),
    )
    return out


def apply_scheme(
    model: nn.Module, scheme_name: str, trained_pooling: str, *, seed: int = 0
) -> nn.Module:
    """Swap the model's pooling for the one the scheme tests with (in place); returns the model."""
    if scheme_name not in SCHEMES:
        raise ValueError(f"unknown test scheme {scheme_name!r}; choose one of {', '.join(SCHEMES)}")
    scheme = SCHEMES[scheme_name]
    if scheme.requires is not None and trained_pooling != scheme.requires:
        raise ValueError(
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
    collected: Collected, classes: list[str], out_dir: Path, *, pool: str, figures: bool = True
) -> dict[str, Any]:
    """metrics.json, per_class.csv, confusion.csv (+ confusion.png) and scores.pt in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = summarize(collected.log_probs, collected.labels)
    metrics["videos"] = len(collected.videos)
    confusion = confusion_matrix(collected.log_probs.argmax(-1), collected.labels, len(classes))
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
    torch.save(collected.to_dict(classes, pool), out_dir / "scores.pt")
    if figures:
        from datp.visualize import plot_confusion

        plot_confusion(confusion, classes, out_dir / "confusion.png")
    return metrics


def load_scores(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"score file {path} does not exist (datp evaluate writes scores.pt)"
        )
    try:
        scores = torch.load(path, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable datp score file: {error}") from error
    if not isinstance(scores, dict) or "pooled" not in scores:
        raise ValueError(f"{path} is not a datp score file (no 'pooled' entry)")
    return scores


def fuse(
    score_files: list[Path], weights: list[float], *, softmax: bool = False
) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Late fusion of streams: ``sum_s weight_s * scores_s`` per video.

    Raw pooled vectors by default (TSN fuses pre-softmax scores; the paper weights RGB 1 and
    flow 1.5), or probabilities with ``softmax=True``. Videos are matched by id, so two
    evaluations in different orders fuse correctly; a video missing from one stream is an error.
    Returns fused scores ``[V, C]``, labels ``[V]``, video ids and class names.
    """
    if len(score_files) != len(weights):
        raise ValueError(f"{len(score_files)} score files but {len(weights)} weights")
    streams = [load_scores(p) for p in score_files]
    reference = streams[0]
    order = {video: i for i, video in enumerate(reference["videos"])}
    fused = torch.zeros_like(reference["pooled"])
    for path, stream, weight in zip(score_files, streams, weights, strict=True):
        if stream["classes"] != reference["classes"]:
            raise ValueError(f"{path} has other classes than {score_files[0]}")
        if set(stream["videos"]) != set(order):
            missing = sorted(set(order) ^ set(stream["videos"]))[:5]
            raise ValueError(f"{path} and {score_files[0]} cover different videos (e.g. {missing})")
        index = torch.tensor([order[v] for v in stream["videos"]])
        values = stream["log_probs"].exp() if softmax else stream["pooled"]
        fused[index] += weight * values
        if not torch.equal(reference["labels"][index], stream["labels"]):
            raise ValueError(f"{path} and {score_files[0]} disagree on the labels of some videos")
    return fused, reference["labels"], reference["videos"], reference["classes"]


def evaluate_checkpoint(
    checkpoint: Path,
    *,
    scheme: str = "datp",
    segments: int | None = None,
    crops: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: Path | None = None,
    seed: int = 0,
    figures: bool = True,
) -> tuple[dict[str, Any], Collected]:
    """Evaluate a training checkpoint under a test scheme; writes the report when ``out_dir`` is
    given. ``overrides`` change the saved config (e.g. ``data.root=...`` on another machine)."""
    from torch.utils.data import DataLoader

    from datp.build import build_test_dataset, model_from_checkpoint
    from datp.train import resolve_device

    if scheme not in SCHEMES:
        raise ValueError(f"unknown test scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    chosen = SCHEMES[scheme]
    model, config, classes, _ = model_from_checkpoint(
        checkpoint, overrides=overrides, segments=segments or chosen.segments,
        crops=crops or chosen.crops,
    )
    apply_scheme(model, scheme, config.pooling.kind, seed=seed)
    device = resolve_device(config.train.device)
    model.to(device)
    dataset, collate = build_test_dataset(config, classes=classes)
    loader = DataLoader(
        dataset,
        batch_size=max(1, config.train.batch_size // config.data.test_crops),
        num_workers=config.data.workers,
        collate_fn=collate,
    )
    collected = collect(model, loader, device, config.train.amp)
    if out_dir is not None:
        metrics = write_report(
            collected, classes, Path(out_dir), pool=model.pooling.pool, figures=figures
        )
    else:
        metrics = summarize(collected.log_probs, collected.labels)
    metrics.update(scheme=scheme, segments=config.data.test_segments, crops=config.data.test_crops)
    return metrics, collected
