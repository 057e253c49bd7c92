"""Every computation of results, as pure functions: accuracy, the confusion matrix, the metrics
dict, late fusion of streams and its weights, and when a video is too short for its segments.

Dimension key: V videos, C classes, S streams.

Train, evaluate, predict, fuse, check, the demo and the experiments call these; none of them
computes a result of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from datp.errors import InputError

# --- accuracy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScore:
    """One class of a prediction's top k."""

    index: int
    name: str
    probability: float


def top_classes(probabilities: Tensor, classes: Sequence[str], k: int) -> list[ClassScore]:
    """The ``k`` most probable of ``classes`` (``probabilities [C]``), most probable first."""
    values, indices = probabilities.topk(min(k, len(classes)))
    return [ClassScore(index=int(i), name=classes[int(i)], probability=float(v))
            for v, i in zip(values, indices, strict=True)]


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Share of videos whose label is among the k highest scores ``[V, C]``; labels ``[V]``."""
    k = min(k, scores.shape[-1])
    top = scores.topk(k, dim=-1).indices  # [V, k]
    return (top == labels[:, None]).any(dim=-1).float().mean().item()


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_from_scores(scores: Tensor, labels: Tensor) -> Tensor:
    """``[C, C]`` counts of the top-scoring class of each video, scores ``[V, C]``, against its
    label ``[V]``; the one place a video's prediction is its highest score."""
    return confusion_matrix(scores.argmax(-1), labels, scores.shape[-1])


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """``[C]`` recall of each class; NaN for a class with no test video."""
    totals = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return torch.where(totals > 0, correct / totals.clamp_min(1), torch.nan)


def mean_class_accuracy(confusion: Tensor) -> float:
    """TSN's headline metric: the mean of per-class accuracies over classes that have videos."""
    per_class = per_class_accuracy(confusion)
    return per_class[~per_class.isnan()].mean().item()


# --- the metrics of a result ----------------------------------------------------------------------


def summarize(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """top1, top5 and mean class accuracy of scores ``[V, C]`` against labels ``[V]``."""
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(confusion_from_scores(scores, labels)),
    }


def evaluation_metrics(
    scores: Tensor, labels: Tensor, *, videos: int, skipped_videos: int
) -> dict[str, Any]:
    """What every evaluation reports, in this order: :func:`summarize` of scores ``[V, C]``
    against labels ``[V]``, then ``videos`` (those scored) and ``skipped_videos`` (those that
    could not be read and are left out of the metrics). Callers add what they know besides
    (the epoch, the protocol)."""
    return {**summarize(scores, labels), "videos": videos, "skipped_videos": skipped_videos}


# --- late fusion ----------------------------------------------------------------------------------

FUSION_WEIGHTS: dict[str, float] = {"rgb": 1.0, "flow": 1.5}
"""The paper's late-fusion weights by modality (TSN's 1 : 1.5)."""


def validate_fusion_weights(
    weights: Sequence[float], *, option: str, num_streams: int | None = None
) -> list[float]:
    """Late-fusion weights given on the command line as ``option``: finite, >= 0, not all zero,
    and (when ``num_streams`` is given) one per stream. Raises :class:`InputError` naming the
    option, the weights and what is wrong."""
    weights = [float(w) for w in weights]
    given = f"{option} {' '.join(f'{w:g}' for w in weights)}".rstrip()
    if not weights:
        raise InputError(f"{option}: no weights given; give one per stream, e.g. 1 1.5")
    if num_streams is not None and len(weights) != num_streams:
        raise InputError(f"{given}: {len(weights)} weight(s) for {num_streams} stream(s); give "
                         "one per stream")
    for i, weight in enumerate(weights, start=1):
        if not math.isfinite(weight) or weight < 0:
            raise InputError(f"{given}: weight {i} is {weight:g}: must be a finite number >= 0")
    if not any(weights):
        raise InputError(f"{given}: all weights are 0; at least one must be > 0")
    return weights


def fuse_scores(scores: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """Late fusion: ``sum_s weight_s * scores_s``, each of S streams' scores ``[..., C]`` for the
    same videos in the same order (TSN fuses raw pooled vectors this way). Added stream by stream
    in the given order, so the sum is the same to the last bit wherever it is taken."""
    assert len(scores) == len(weights) and scores, "one weight per stream, at least one stream"
    fused = torch.zeros_like(scores[0])
    for values, weight in zip(scores, weights, strict=True):
        fused += weight * values
    return fused


def fuse_probabilities(probabilities: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """The weighted mean of S streams' probabilities ``[..., C]``: a distribution again, whether
    each stream pooled logits or probabilities."""
    return fuse_scores(probabilities, weights) / sum(weights)


# --- videos too short for their segments ----------------------------------------------------------


def frames_for_segments(num_segments: int, *, length: int = 1) -> int:
    """The fewest frames (flow fields) that N segments of L take without sharing one: ``N + L -
    1``, N distinct starts and the last one's stack."""
    if num_segments < 1 or length < 1:
        raise ValueError(f"num_segments and length must be >= 1, got {num_segments}, {length}")
    return num_segments + length - 1


def repeats_frames(num_frames: int, num_segments: int, *, length: int = 1) -> bool:
    """Whether N segments of L frames must share or repeat frames in a video of F frames: fewer
    than :func:`frames_for_segments` leave fewer than N distinct starts (or a stack past the
    end), and TSN sampling (:mod:`datp.data.sampling`) spreads the starts evenly, repeating
    frames."""
    return num_frames < frames_for_segments(num_segments, length=length)


def short_video_warning(
    video: str, num_frames: int, *, segments: int, length: int, flow: bool
) -> str | None:
    """The warning for a video of ``num_frames`` frames (flow fields for a ``flow`` stream) too
    short for ``segments`` segments of ``length``; None when it is long enough."""
    if not repeats_frames(num_frames, segments, length=length):
        return None
    unit = "flow fields" if flow else "frames"
    return (f"{video}: {num_frames} {unit}, too few for {segments} segments of {length}: "
            "frames repeat")
