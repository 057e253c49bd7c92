"""From per-step class scores and a pooling's temporal weights to detections, as weakly
supervised temporal action localization does it; and the result file those detections go in.

Dimension key: N steps (test segments), C classes, G points of the dense time grid, K Gaussians,
S streams.

Times are normalized to [0, 1] over the video, as the pooling sees them (``times [N]``, a MoG's
``mu``); seconds are ``t * duration``, exact for a constant frame rate.

The method (each step a pure function; :func:`localize` chains them, and any function with its
signature can stand in for it):

1. **Temporal class activation** (TCAM) ``[G, C]`` on a grid of ``G = grid_per_step * N``
   times: the per-step class probabilities (softmax of the per-step scores, interpolated
   linearly between step times, held past the first and last) times the temporal weight curve
   ``a(t)`` scaled to a peak of 1 (Eq. (3) does not see the scale):

   - a mixture of Gaussians (DATP): Eq. (1) evaluated at every grid time from its
     ``(rho, mu, sigma)``, exact at any resolution;
   - per-step weights (attention, the discrete generator; negative ones count as 0),
     interpolated like the scores;
   - none (average pooling): ``a(t) = 1``, the per-step probabilities alone.

   ``a(t_i) p_{i,c}`` is what step i adds to class c's pooled score in Eq. (3), and the same
   product is STPN's T-CAM (Nguyen et al., CVPR 2018: attention times class activation).
   Streams fuse here, before localizing (:func:`fuse_activations`, STPN's weighted sum).
2. **Classes to localize**: those whose video-level probability is at least
   ``class_threshold`` (0.1, STPN's), the ``max_classes`` (3) most probable of them, and always
   the top one.
3. **Proposals**: each class's TCAM is min-max normalized over the video and cut at every
   threshold of ``thresholds`` (0.1, 0.2, ..., 0.9) into runs of consecutive grid points at or
   above it; a run found at several thresholds is kept once. Multi-threshold proposals as in
   W-TALC (Paul et al., ECCV 2018) and BaS-Net (Lee et al., AAAI 2020; there absolute thresholds
   0 to 0.225 on a background-suppressed, min-max normalized activation).
4. **Score**: the outer-inner contrast of AutoLoc (Shou et al., ECCV 2018) as BaS-Net scores its
   proposals: the mean TCAM inside the run minus the mean in bands of ``outer_fraction`` (0.25)
   of its length on either side (clipped to the video; 0 when both fall outside), plus
   ``video_score_weight`` (0.2) times the class's video-level probability. On the TCAM itself,
   not the normalized one, so that scores compare across videos (BaS-Net's code takes it after
   zeroing everything below the threshold, which makes its outer mean 0).
5. **Per-class non-maximum suppression** at tIoU ``nms_threshold`` (0.5), greedy in decreasing
   score (ties: the earlier proposal first); the ``max_detections`` (100) best of a video kept.

What it leaves open, as the literature does: the thresholds, bands and NMS tIoU are
conventions tuned on THUMOS14, not learned; a mixture's K Gaussians could propose K instances
directly, but the mixture's sum is used (two Gaussians on one instance give one run, as they
should); boundaries are as precise as the steps allow (the scores are known at step times only);
a class absent from the video-level top predictions is never localized.

The result file is ActivityNet's (:class:`datp.detection_file.DetectionFile` spells it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from datp.detection_file import Detection
from datp.detection_map import segment_iou
from datp.errors import InputError
from datp.pooling.functional import mog_log_weights


class Mixture(NamedTuple):
    """A mixture of K Gaussians over normalized time (Eq. (1)): each ``[K]``."""

    rho: Tensor | np.ndarray
    mu: Tensor | np.ndarray
    sigma: Tensor | np.ndarray


TemporalWeights = Mixture | Tensor | np.ndarray | None
"""What a pooling says about time: a mixture, per-step weights ``[N]``, or None (average)."""


@dataclass(frozen=True)
class LocalizationSettings:
    """The conventions of :func:`localize` (module docstring, steps 2 to 5)."""

    grid_per_step: int = 8
    class_threshold: float = 0.1
    max_classes: int = 3
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    outer_fraction: float = 0.25
    video_score_weight: float = 0.2
    nms_threshold: float = 0.5
    max_detections: int = 100

    def __post_init__(self) -> None:
        problems = []
        if self.grid_per_step < 1 or self.max_classes < 1 or self.max_detections < 1:
            problems.append("grid_per_step, max_classes and max_detections must be >= 1")
        if not self.thresholds or not all(0 <= t < 1 for t in self.thresholds):
            problems.append(f"thresholds must lie in [0, 1), got {self.thresholds}")
        if not 0 <= self.class_threshold <= 1 or not 0 < self.nms_threshold <= 1:
            problems.append("class_threshold must lie in [0, 1] and nms_threshold in (0, 1]")
        if self.outer_fraction < 0 or self.video_score_weight < 0:
            problems.append("outer_fraction and video_score_weight must be >= 0")
        if problems:
            raise InputError("; ".join(problems))


# --- 1. the temporal class activation --------------------------------------------------------


def grid_times(num_points: int) -> np.ndarray:
    """float64 ``[G]``: the centres ``(g + 0.5) / G`` of G equal cells of the video."""
    if num_points < 1:
        raise ValueError(f"a grid needs at least one point, got {num_points}")
    return (np.arange(num_points) + 0.5) / num_points


def _array(values: Tensor | np.ndarray | Sequence[float], what: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite")
    return array


def weight_curve(weights: TemporalWeights, grid: np.ndarray, step_times: np.ndarray
                 ) -> np.ndarray:
    """The temporal weights ``a(t)`` ``[G]`` at the ``grid`` times, largest 1 (module docstring,
    step 1); ``step_times [N]`` place per-step weights. All-zero weights give zeros."""
    if weights is None:
        return np.ones(len(grid))
    if isinstance(weights, Mixture):
        rho, mu, sigma = (torch.as_tensor(_array(v, "the mixture"), dtype=torch.float64
                                          ).reshape(1, -1) for v in weights)
        if not (sigma > 0).all() or not (rho >= 0).all():
            raise ValueError("a mixture needs sigma > 0 and rho >= 0")
        log_weights = mog_log_weights(torch.from_numpy(grid).reshape(1, -1), rho, mu, sigma)[0]
        return torch.exp(log_weights - log_weights.max()).numpy()  # Eq. (1), peak 1
    values = _array(weights, "the temporal weights").reshape(-1).clip(min=0)  # [N]
    if values.shape != step_times.shape:
        raise ValueError(f"expected weights [{len(step_times)}], got {tuple(values.shape)}")
    curve = np.interp(grid, step_times, values)
    top = curve.max(initial=0.0)
    return curve / top if top > 0 else curve


def temporal_class_activation(
    step_scores: Tensor | np.ndarray,
    *,
    step_times: Tensor | np.ndarray | Sequence[float],
    weights: TemporalWeights = None,
    grid_size: int,
) -> np.ndarray:
    """TCAM ``[G, C]`` in [0, 1] on :func:`grid_times` ``(grid_size)``: per-step class
    probabilities (softmax of ``step_scores [N, C]`` at ``step_times [N]`` in [0, 1],
    increasing) interpolated onto the grid, times :func:`weight_curve`."""
    scores = _array(step_scores, "the per-step scores")
    times = _array(step_times, "the step times").reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != len(times) or len(times) < 1:
        raise ValueError(f"expected step scores [N, C] and times [N], got {scores.shape} and "
                         f"{times.shape}")
    if (np.diff(times) < 0).any():
        raise ValueError("step times must not decrease")
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))  # [N, C]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    grid = grid_times(grid_size)
    on_grid = np.stack([np.interp(grid, times, probabilities[:, c])
                        for c in range(scores.shape[1])], axis=1)  # [G, C]
    return weight_curve(weights, grid, times)[:, None] * on_grid


def fuse_activations(activations: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Streams' TCAMs ``S x [G, C]`` on one grid fused as ``sum_s w_s A_s / sum_s w_s`` (STPN
    fuses RGB and flow T-CAMs so; the fusion weights are the scores' ones)."""
    if len(activations) != len(weights) or not activations:
        raise ValueError(f"expected one weight per activation, got {len(weights)} for "
                         f"{len(activations)}")
    shapes = {np.shape(a) for a in activations}
    if len(shapes) != 1:
        raise ValueError(f"activations must share one grid and class list, got {shapes}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fusion weights must be >= 0 with a positive sum, got {weights}")
    return sum(w * np.asarray(a, dtype=np.float64) for w, a in zip(weights, activations,
                                                                   strict=True)) / sum(weights)


# --- 2. to 5. from an activation to detections -----------------------------------------------


def classes_to_localize(video_probabilities: Tensor | np.ndarray, *, threshold: float,
                        max_classes: int) -> list[int]:
    """Indices of the classes with probability ``>= threshold``, most probable first, at most
    ``max_classes``, and always the top one."""
    probabilities = _array(video_probabilities, "the video probabilities").reshape(-1)
    order = np.argsort(-probabilities, kind="stable")
    chosen = [int(c) for c in order[:max_classes] if probabilities[c] >= threshold]
    return chosen or [int(order[0])]


def threshold_runs(activation: np.ndarray, thresholds: Sequence[float]) -> list[tuple[int, int]]:
    """Runs ``(first, last)`` (inclusive grid indices) of ``activation [G]``, min-max normalized,
    at or above each threshold; each run once, in order of first appearance. A flat activation
    is one run over the whole video."""
    low, high = float(activation.min()), float(activation.max())
    normalized = (activation - low) / (high - low) if high - low > 1e-12 else np.ones_like(
        activation)
    runs: dict[tuple[int, int], None] = {}
    for threshold in thresholds:
        above = np.concatenate([[False], normalized >= threshold, [False]])
        edges = np.flatnonzero(above[1:] != above[:-1])  # starts and ends, alternating
        for first, end in zip(edges[::2], edges[1::2], strict=True):
            runs.setdefault((int(first), int(end) - 1), None)
    return list(runs)


def outer_inner_contrast(activation: np.ndarray, first: int, last: int, outer_fraction: float
                         ) -> float:
    """Mean of ``activation [G]`` over ``first..last`` minus its mean over the bands of
    ``outer_fraction`` of the run's length before and after it (inside the video)."""
    band = int(outer_fraction * (last - first + 1))
    outer = np.concatenate([activation[max(first - band, 0):first],
                            activation[last + 1:last + 1 + band]])
    inner = float(activation[first:last + 1].mean())
    return inner - (float(outer.mean()) if outer.size else 0.0)


def non_maximum_suppression(detections: Sequence[Detection], threshold: float
                            ) -> list[Detection]:
    """Greedy temporal NMS of one class's detections: in decreasing score (ties: earlier
    first), keep one and drop those overlapping a kept one with tIoU ``>= threshold``."""
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)
    kept: list[Detection] = []
    for i in order:
        candidate = detections[i]
        if kept:
            segments = np.array([(k.start, k.end) for k in kept])
            if (segment_iou((candidate.start, candidate.end), segments) >= threshold).any():
                continue
        kept.append(candidate)
    return kept


def detect(
    activation: np.ndarray,
    *,
    duration: float,
    classes: Sequence[str],
    video_probabilities: Tensor | np.ndarray,
    settings: LocalizationSettings = LocalizationSettings(),
) -> list[Detection]:
    """Detections of one video from its TCAM ``[G, C]`` (module docstring, steps 2 to 5), best
    first; ``video_probabilities [C]`` its pooled class probabilities, ``duration`` in seconds."""
    activation = np.asarray(activation, dtype=np.float64)
    probabilities = _array(video_probabilities, "the video probabilities").reshape(-1)
    if activation.ndim != 2 or activation.shape[1] != len(classes) or len(probabilities) != len(
            classes):
        raise ValueError(f"expected an activation [G, {len(classes)}] and probabilities "
                         f"[{len(classes)}], got {activation.shape} and {probabilities.shape}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"the duration must be positive seconds, got {duration}")
    cell = duration / activation.shape[0]
    found: list[Detection] = []
    for c in classes_to_localize(probabilities, threshold=settings.class_threshold,
                                 max_classes=settings.max_classes):
        proposals = [
            Detection(
                label=classes[c],
                score=outer_inner_contrast(activation[:, c], first, last, settings.outer_fraction)
                + settings.video_score_weight * float(probabilities[c]),
                start=first * cell,
                end=(last + 1) * cell,
            )
            for first, last in threshold_runs(activation[:, c], settings.thresholds)
        ]
        found += non_maximum_suppression(proposals, settings.nms_threshold)
    found.sort(key=lambda d: -d.score)
    return found[: settings.max_detections]


class StepScores(NamedTuple):
    """What one stream says of one video: per-step scores ``[N, C]`` (logits) at ``times [N]``
    (normalized) and its pooling's temporal ``weights`` (a :class:`Mixture`, per-step weights
    ``[N]`` or None)."""

    scores: Tensor | np.ndarray
    times: Tensor | np.ndarray | Sequence[float]
    weights: TemporalWeights = None


def localize(
    step_scores: Tensor | np.ndarray,
    *,
    step_times: Tensor | np.ndarray | Sequence[float],
    duration: float,
    classes: Sequence[str],
    video_probabilities: Tensor | np.ndarray,
    weights: TemporalWeights = None,
    settings: LocalizationSettings = LocalizationSettings(),
) -> list[Detection]:
    """One video's detections, best first, from its per-step scores ``[N, C]`` at
    ``step_times [N]`` (normalized), its pooling's ``weights`` (a :class:`Mixture`, per-step
    weights ``[N]`` or None), its pooled class probabilities ``[C]`` and its duration in
    seconds: :func:`temporal_class_activation`, then :func:`detect`."""
    return localize_streams([StepScores(step_scores, step_times, weights)], duration=duration,
                            classes=classes, video_probabilities=video_probabilities,
                            settings=settings)


def localize_streams(
    streams: Sequence[StepScores],
    *,
    fusion_weights: Sequence[float] | None = None,
    duration: float,
    classes: Sequence[str],
    video_probabilities: Tensor | np.ndarray,
    settings: LocalizationSettings = LocalizationSettings(),
) -> list[Detection]:
    """One video's detections, best first, from one or more streams (RGB and flow): each
    stream's TCAM on one grid of ``grid_per_step`` times the largest N, the TCAMs fused with
    ``fusion_weights`` (:func:`fuse_activations`; needed for two streams or more), then
    :func:`detect` with the (fused) pooled class probabilities ``[C]``."""
    if not streams:
        raise ValueError("expected at least one stream")
    steps = max(len(_array(s.times, "the step times").reshape(-1)) for s in streams)
    activations = [
        temporal_class_activation(s.scores, step_times=s.times, weights=s.weights,
                                  grid_size=settings.grid_per_step * steps)
        for s in streams
    ]  # S x [G, C]
    if len(activations) == 1:
        activation = activations[0]
    else:
        if fusion_weights is None:
            raise ValueError(f"{len(streams)} streams need their fusion weights")
        activation = fuse_activations(activations, fusion_weights)
    return detect(activation, duration=duration, classes=classes,
                  video_probabilities=video_probabilities, settings=settings)
