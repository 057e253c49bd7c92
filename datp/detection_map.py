"""Temporal action detection scored as the field scores it: average precision per class and tIoU
threshold, with the matching rules of ActivityNet's official ``Eval_Detection``
(``Evaluation/eval_detection.py`` and ``utils.py`` of github.com/activitynet/ActivityNet).

Dimension key: D detections of one class, G annotated instances (of one class, or of one video),
R tIoU thresholds, A ambiguous spans of one video.

The rules, each as the reference has them:

- **Classes** are the labels of the ground truth (of the subset scored), in order of first
  appearance. mAP is the mean of their APs. A class without ground truth is not a class here:
  it takes no part in the mean. Detections whose label no instance carries are left out and
  counted (:attr:`DetectionScores.ignored_labels`); the reference stops with a ``KeyError`` on
  them, which would make a model trained on more classes than the test set holds unscorable.
- **Ranking**: a class's detections are taken in decreasing score; the reference sorts with
  ``argsort()[::-1]``, numpy's default (unstable) sort reversed, so its order of tied scores is
  the machine's: numpy's introsort keeps ties in order up to 16 elements (the reversal then
  puts the later first), the vectorized sorts recent numpy uses on x86 CPUs with AVX2 or
  AVX-512 keep no order (numpy 2.4 on an AVX-512 machine reorders 4 ties among 7). We rank
  ties as the reversed stable sort does, always: the detection that comes *later* in the
  results (videos in file order, each video's list in order) first.
  Tied tIoUs with a video's instances likewise: the later instance first.
- **Matching**, at each threshold on its own: a detection in a video without an instance of its
  class is a false positive. Otherwise the video's instances are visited in decreasing tIoU
  (ties: the later instance first); the first whose tIoU is below the threshold ends
  the search with a false positive; an instance already matched is passed over; the first free
  one is matched (true positive). A detection whose every candidate at or above the threshold
  is taken is a false positive. So each instance is matched at most once, to the detection of
  highest score that reaches it, and a detection that overlaps two instances takes the one it
  overlaps most, leaving the other free. tIoU equal to the threshold matches. (Held against a
  line-by-line transcription of the reference, with stable sorts, on 3,000 random cases with
  ties and duplicates: equal to the last bit.)
- **AP**: precision and recall (``tp / G``) down the ranking; precision is made monotone from
  the end, and AP sums ``(r_i - r_{i-1}) * p_i`` over the points where recall changes, with
  recall closed at 1 and precision at 0 (VOC 2011's interpolation, the reference's
  ``interpolated_prec_rec``). A class with instances but no detection has AP 0 (the reference's
  current version; an older one failed on it).
- **Degenerate segments**: a union of length 0 (two points at the same time) gives tIoU 0 here;
  the reference divides 0 by 0 and its NaN then matches any threshold.
- **THUMOS14's ambiguous spans** (``Ambiguous_test.txt``, class-free): the official THUMOS14
  evaluation (``TH14evalDet.m``) removes from a class's ranking every detection that is not a
  true positive and overlaps (positive intersection) an ambiguous span of its video: it counts
  neither as a true nor as a false positive. Given ``ambiguous``, we do the same at each
  threshold, on top of ActivityNet's matching (THUMOS's own matching differs: instance-driven,
  tIoU strictly above the threshold, its own AP; the weakly supervised literature
  scores THUMOS14 with ActivityNet's code, and so do we). Without ``ambiguous``, as in that
  literature's ActivityNet-style THUMOS14 files, they count as false positives.

Thresholds: THUMOS14 0.1:0.1:0.7, ActivityNet 0.5:0.05:0.95, both as ``np.linspace`` gives them
(the reference's default), so that a tIoU on a threshold decides as there (ActivityNet's 0.9 is
0.8999999999999999). Names of thresholds (``"0.5"``, ``"0.55"``) are rounded to two places.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from datp.errors import InputError

THUMOS14_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.1, 0.7, 7))
ACTIVITYNET_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
THRESHOLD_SETS: dict[str, tuple[float, ...]] = {
    "thumos14": THUMOS14_THRESHOLDS,
    "activitynet": ACTIVITYNET_THRESHOLDS,
}


class Instance(Protocol):
    """An annotated instance: a label and a segment in seconds."""

    label: str
    start: float
    end: float


class ScoredSegment(Instance, Protocol):
    """A detection: an instance with a score."""

    score: float


def threshold_name(threshold: float) -> str:
    """``0.5`` -> ``"0.5"``, ``0.55`` -> ``"0.55"``: the key of a threshold in metrics."""
    return f"{round(threshold, 2):g}"


# --- the reference's arithmetic --------------------------------------------------------------


def segment_iou(segment: Sequence[float], candidates: np.ndarray) -> np.ndarray:
    """tIoU ``[G]`` of one ``(start, end)`` with each row of ``candidates [G, 2]``; a union of
    length 0 gives 0."""
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    start, end = float(segment[0]), float(segment[1])
    intersection = (np.minimum(end, candidates[:, 1]) - np.maximum(start, candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (end - start) - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def descending_order(values: np.ndarray) -> np.ndarray:
    """int64 ``[D]``: indices of ``values`` in decreasing order, ties later index first (the
    reference's ``argsort()[::-1]`` with a stable sort)."""
    return np.argsort(np.asarray(values, dtype=np.float64), kind="stable")[::-1]


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011's interpolated AP of a ranking's precision ``[D]`` and recall ``[D]``."""
    precision = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone from the end
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_detections(
    detections: Sequence[tuple[str, float, float, float]],
    ground_truth: Mapping[str, np.ndarray],
    thresholds: Sequence[float],
    *,
    ambiguous: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Outcome ``[R, D]`` of one class's detections ``(video, start, end, score)``, already in
    ranking order: 1 true positive, 0 false positive, -1 left out (not a true positive and
    overlapping an ambiguous span). ``ground_truth``: video -> ``[G, 2]`` instances of the class
    in the reference's order; ``ambiguous``: video -> ``[A, 2]``."""
    outcome = np.zeros((len(thresholds), len(detections)), dtype=np.int8)
    taken = {video: np.zeros((len(thresholds), len(segments)), dtype=bool)
             for video, segments in ground_truth.items()}
    for d, (video, start, end, _) in enumerate(detections):
        segments = ground_truth.get(video)
        if segments is not None and len(segments):
            tiou = segment_iou((start, end), segments)  # [G]
            order = descending_order(tiou)
            for r, threshold in enumerate(thresholds):
                for g in order:
                    if tiou[g] < threshold:
                        break
                    if not taken[video][r, g]:
                        taken[video][r, g] = True
                        outcome[r, d] = 1
                        break
        spans = None if ambiguous is None else ambiguous.get(video)
        if spans is not None and len(spans):
            spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
            overlap = (np.minimum(end, spans[:, 1]) - np.maximum(start, spans[:, 0]) > 0).any()
            if overlap:
                outcome[outcome[:, d] == 0, d] = -1
    return outcome


def average_precision(outcome: np.ndarray, num_instances: int) -> np.ndarray:
    """AP ``[R]`` from :func:`match_detections`' outcome ``[R, D]`` and the class's instance
    count (> 0)."""
    if num_instances < 1:
        raise ValueError(f"a class without instances has no AP, got {num_instances}")
    result = np.zeros(outcome.shape[0])
    for r, row in enumerate(outcome):
        kept = row[row >= 0]  # left-out detections leave the ranking
        if kept.size == 0:
            continue
        tp = np.cumsum(kept == 1, dtype=np.float64)
        fp = np.cumsum(kept == 0, dtype=np.float64)
        result[r] = interpolated_average_precision(tp / (tp + fp), tp / num_instances)
    return result


# --- a whole result --------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionScores:
    """AP of every class at every threshold, and what was left out."""

    classes: tuple[str, ...]
    """The ground truth's labels, in order of first appearance."""
    thresholds: tuple[float, ...]
    average_precision: np.ndarray
    """``[C, R]`` in [0, 1]."""
    instances: int
    detections: int
    """Detections scored (those of a class with ground truth)."""
    ignored_labels: dict[str, int] = field(default_factory=dict)
    """Detections left out because no instance carries their label: label -> count."""

    @property
    def mean_average_precision(self) -> np.ndarray:
        """mAP ``[R]`` over the classes."""
        return self.average_precision.mean(axis=0)

    def at(self, threshold: float) -> float:
        """mAP at one of the thresholds."""
        for r, t in enumerate(self.thresholds):
            if math.isclose(t, threshold, abs_tol=1e-9):
                return float(self.mean_average_precision[r])
        raise KeyError(f"threshold {threshold} was not scored; scored: {self.thresholds}")


def _checked_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def evaluate_detections(
    ground_truth: Mapping[str, Sequence[Instance]],
    detections: Mapping[str, Sequence[ScoredSegment]],
    *,
    thresholds: Sequence[float] = ACTIVITYNET_THRESHOLDS,
    ambiguous: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> DetectionScores:
    """AP per class and threshold of ``detections`` (video -> its detections, a result file's
    ``results``) against ``ground_truth`` (video -> its annotated instances, the subset scored),
    with the module's rules; ``ambiguous``: video -> spans whose unmatched detections leave the
    ranking (THUMOS14). Raises ``InputError`` on a detection with a non-finite number, or when
    the ground truth holds no instance."""
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or not all(0 <= t <= 1 for t in thresholds):
        raise InputError(f"tIoU thresholds must lie in [0, 1], got {thresholds}")
    classes: dict[str, dict[str, list[tuple[float, float]]]] = {}  # label -> video -> segments
    instances = 0
    for video, annotated in ground_truth.items():
        for instance in annotated:
            classes.setdefault(instance.label, {}).setdefault(video, []).append(
                (float(instance.start), float(instance.end)))
            instances += 1
    if not classes:
        raise InputError("the ground truth holds no instance to score detections against")
    ranked: dict[str, list[tuple[str, float, float, float]]] = {label: [] for label in classes}
    ignored: dict[str, int] = {}
    for video, found in detections.items():
        for k, detection in enumerate(found):
            where = f"detection {k} of video {video!r}"
            row = (video, _checked_number(detection.start, f"{where}: start"),
                   _checked_number(detection.end, f"{where}: end"),
                   _checked_number(detection.score, f"{where}: score"))
            if detection.label in ranked:
                ranked[detection.label].append(row)
            else:
                ignored[detection.label] = ignored.get(detection.label, 0) + 1
    spans = None if ambiguous is None else {
        video: np.asarray(list(s), dtype=np.float64).reshape(-1, 2)
        for video, s in ambiguous.items()}
    table = np.zeros((len(classes), len(thresholds)))
    for c, (label, by_video) in enumerate(classes.items()):
        rows = ranked[label]
        rows = [rows[i] for i in descending_order(np.array([row[3] for row in rows]))]
        segments = {video: np.asarray(s, dtype=np.float64) for video, s in by_video.items()}
        outcome = match_detections(rows, segments, thresholds, ambiguous=spans)
        table[c] = average_precision(outcome, sum(len(s) for s in by_video.values()))
    return DetectionScores(
        classes=tuple(classes), thresholds=thresholds, average_precision=table,
        instances=instances, detections=sum(len(r) for r in ranked.values()),
        ignored_labels=ignored,
    )


def localization_metrics(
    ground_truth: Mapping[str, Sequence[Instance]],
    detections: Mapping[str, Sequence[ScoredSegment]],
    *,
    ambiguous: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    threshold_sets: Mapping[str, Sequence[float]] = THRESHOLD_SETS,
) -> dict[str, Any]:
    """The ``localization`` entry of ``metrics.json``: ``mAP`` (threshold name -> mAP in percent,
    every threshold of every set, ascending), ``average_mAP`` (set name -> the mean of its mAPs,
    in percent), ``classes``, ``instances``, ``detections``, ``ambiguous_spans_left_out``
    (whether ambiguous spans were given) and ``ignored_labels``."""
    union = sorted({float(t) for values in threshold_sets.values() for t in values})
    scores = evaluate_detections(ground_truth, detections, thresholds=union, ambiguous=ambiguous)
    per_threshold = {t: 100.0 * float(m) for t, m in zip(union, scores.mean_average_precision,
                                                          strict=True)}
    return {
        "mAP": {threshold_name(t): m for t, m in per_threshold.items()},
        "average_mAP": {name: float(np.mean([per_threshold[float(t)] for t in values]))
                        for name, values in threshold_sets.items()},
        "classes": len(scores.classes),
        "instances": scores.instances,
        "detections": scores.detections,
        "ambiguous_spans_left_out": ambiguous is not None,
        "ignored_labels": dict(scores.ignored_labels),
    }
