"""Weak localization of evaluated videos, scored as the field scores it: what ``datp evaluate
--localization`` and ``datp fuse --localization`` add to a report.

Dimension key: V videos, N segments, C classes, K Gaussians, G points of the time grid,
S streams.

    scores.pt (per video: per-step logits [N, C], times [N], temporal weights [N] and, for a
    mixture pooling, its rho, mu, sigma [3, K]; pooled log-probabilities [C])
      -> per stream, the temporal class activation [G, C] (datp.detection), G the same for
         every stream: grid_per_step x the largest N
      -> streams fused (STPN's weighted sum, the fusion weights)        (datp fuse)
      -> thresholded, scored, suppressed detections                     (datp.detection.detect)
      -> detections.json (datp.detection_file), video ids as the annotations name them
      -> mAP per tIoU threshold against the annotations (datp.detection_map), the
         ``localization`` entry of metrics.json with its protocol

Evaluated videos are matched to annotated ones as :func:`datp.data.temporal_annotations.
match_videos` says. The ground truth is the annotations of the evaluated videos, in whatever
subset the file puts them; annotated videos that were not evaluated are left out (and counted),
evaluated videos without annotations are not localized (and counted). Durations come from the
annotations, else from the video (frames / fps).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datp.choices import LocalizationWeights
from datp.data.temporal_annotations import (
    TemporalAnnotations,
    annotations_fingerprint,
    match_videos,
    read_temporal_annotations,
)
from datp.detection import (
    LocalizationSettings,
    Mixture,
    StepScores,
    TemporalWeights,
    localize_streams,
)
from datp.detection_file import DETECTIONS, Detection, DetectionFile
from datp.detection_map import localization_metrics
from datp.errors import DataError, InputError
from datp.io import atomic_write_json
from datp.score_file import ScoreFile

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = LocalizationSettings()
"""The conventions of :mod:`datp.detection` (its module docstring), unless told otherwise."""


def _pooling_weights(scores: ScoreFile, index: int) -> TemporalWeights:
    if scores.mixtures:  # exact at any time: evaluated on the grid itself
        rho, mu, sigma = scores.mixtures[index]  # each [K]
        return Mixture(rho, mu, sigma)
    return scores.weights[index]  # [N], interpolated between the steps


def _components(scores: ScoreFile, index: int) -> TemporalWeights:
    if not scores.mixtures:
        return scores.weights[index]
    _, mu, sigma = scores.mixtures[index]  # each [K]
    # rho_k proportional to sigma_k gives every Gaussian the same peak, rho_k / sigma_k.
    return Mixture(sigma / sigma.sum(), mu, sigma)


WEIGHTS: dict[LocalizationWeights, Callable[[ScoreFile, int], TemporalWeights]] = {
    "pooling": _pooling_weights,
    "components": _components,
    "none": lambda scores, index: None,
}
"""--localization-weights -> the temporal weights of video ``index`` of a score file.
``components`` exists because Eq. (3) lets a classifier put all of rho on one Gaussian (one
instance is enough to classify): measured on the untrimmed synthetic benchmark, the learned
mixtures often keep a second Gaussian on another instance with rho near 0 (docs/RESULTS.md)."""


def weights_used(scores: ScoreFile, weights: LocalizationWeights) -> str:
    """What the activation of a score file's videos is weighted with, in words."""
    if weights == "none":
        return "none (per-step scores alone)"
    if scores.mixtures:
        equal = ", at equal height" if weights == "components" else ""
        return f"mixture of {scores.mixtures[0].shape[-1]} Gaussians{equal}, on the grid"
    first = scores.weights[0] if scores.weights else None
    if first is not None and bool((first == first[0]).all()):
        return "uniform weights (the same as none)"
    return "per-step weights, interpolated"


# --- matching and durations ------------------------------------------------------------------


def dataset_durations(dataset: Any, videos: Sequence[str]) -> dict[str, float]:
    """Seconds of each of ``videos`` (dataset ids) as its source says: frames / fps. For
    annotations without durations (THUMOS14's lists); ``DataError`` for a source without a
    frame rate (a frame folder)."""
    wanted = set(videos)
    durations = {}
    for item in getattr(dataset, "items", []):
        if item.path not in wanted or item.path in durations:
            continue
        source = dataset.open_source(item)
        try:
            if not source.fps:
                raise DataError(f"{item.path}: no frame rate to tell its duration; give the "
                                "annotations' durations (an ActivityNet-style JSON)")
            durations[item.path] = source.num_frames / source.fps
        finally:
            release = getattr(dataset.open_source, "release", None)
            if release is not None:
                release(source)
            elif (close := getattr(source, "close", None)) is not None:
                close()
    return durations


# --- detections ------------------------------------------------------------------------------


def _per_step(scores: ScoreFile, path: str | Path) -> None:
    if not scores.segment_scores or not scores.times:
        raise InputError(f"{path}: the score file holds no per-step scores and times to "
                         "localize from (evaluate with a model that returns segment scores)")


def localize_videos(
    streams: Sequence[ScoreFile],
    *,
    fusion_weights: Sequence[float] = (1.0,),
    videos: Mapping[str, str],
    durations: Mapping[str, float],
    weights: LocalizationWeights = "pooling",
    settings: LocalizationSettings = DEFAULT_SETTINGS,
) -> dict[str, list[Detection]]:
    """Detections of each video of ``videos`` (evaluated id -> output id), best first, keyed by
    output id: each stream's activation on one grid, fused with ``fusion_weights`` when there
    are several, then :func:`datp.detection.detect` with the fused pooled probabilities.
    ``durations``: output id -> seconds."""
    if len(fusion_weights) != len(streams):
        raise ValueError(f"expected one fusion weight per stream, got {len(fusion_weights)} "
                         f"for {len(streams)}")
    positions = [{video: i for i, video in enumerate(s.videos)} for s in streams]
    classes = streams[0].classes
    found: dict[str, list[Detection]] = {}
    for video, output in videos.items():
        indices = [p[video] for p in positions]
        probabilities = sum(w * s.log_probs[i].double().exp().numpy() for s, i, w in
                            zip(streams, indices, fusion_weights, strict=True)
                            ) / sum(fusion_weights)  # [C]
        found[output] = localize_streams(
            [StepScores(s.segment_scores[i], s.times[i], WEIGHTS[weights](s, i))
             for s, i in zip(streams, indices, strict=True)],
            fusion_weights=fusion_weights, duration=durations[output], classes=classes,
            video_probabilities=probabilities, settings=settings)
    return found


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Localization:
    """What localizing an evaluation gave: its detections (by annotated id) and the
    ``localization`` entry of metrics.json."""

    detections: dict[str, list[Detection]]
    entry: dict[str, Any]


def localize_evaluation(
    streams: Sequence[ScoreFile],
    annotations_path: str | Path,
    *,
    fusion_weights: Sequence[float] = (1.0,),
    weights: LocalizationWeights = "pooling",
    settings: LocalizationSettings = DEFAULT_SETTINGS,
    durations_of: Callable[[list[str]], dict[str, float]] | None = None,
    score_paths: Sequence[str | Path] = (),
) -> Localization:
    """Localize the videos of evaluated ``streams`` (one score file, or several to fuse) and
    score the detections against the temporal annotations at ``annotations_path``.
    ``durations_of(evaluated ids)`` gives the seconds of videos whose annotations have none."""
    if weights not in WEIGHTS:
        raise InputError(f"localization weights must be one of {', '.join(WEIGHTS)}, got "
                         f"{weights!r}")
    names = list(score_paths) or [f"score file {s + 1}" for s in range(len(streams))]
    for stream, name in zip(streams, names, strict=True):
        _per_step(stream, name)
    annotations = read_temporal_annotations(annotations_path)
    evaluated = streams[0].videos
    matched = match_videos(evaluated, list(annotations.videos))
    if not matched:
        raise DataError(f"{annotations_path}: names none of the {len(evaluated)} evaluated "
                        f"videos (e.g. {evaluated[0]!r}; it names e.g. "
                        f"{next(iter(annotations.videos), 'none')!r})")
    durations = {matched[v]: annotations.videos[matched[v]].duration for v in matched}
    missing = [v for v in matched if durations[matched[v]] is None]
    if missing:
        if durations_of is None:
            raise DataError(f"{annotations_path}: gives no duration for {len(missing)} videos "
                            f"(e.g. {matched[missing[0]]!r})")
        probed = durations_of(missing)
        for video in missing:
            if video not in probed:
                raise DataError(f"{video}: no duration in the annotations or the video")
            durations[matched[video]] = probed[video]
    detections = localize_videos(streams, fusion_weights=fusion_weights, videos=matched,
                                 durations=durations, weights=weights, settings=settings)
    entry = localization_entry(annotations, detections, annotations_path=annotations_path,
                               settings=settings, weights=weights,
                               weighted_with=weights_used(streams[0], weights),
                               unannotated=len(evaluated) - len(matched))
    return Localization(detections=detections, entry=entry)


def localize_fusion(
    score_files: Sequence[str | Path],
    fusion_weights: Sequence[float],
    annotations_path: str | Path,
    *,
    weights: LocalizationWeights = "pooling",
    settings: LocalizationSettings = DEFAULT_SETTINGS,
) -> Localization:
    """:func:`localize_evaluation` of fused streams: each stream's temporal class activation,
    fused with ``fusion_weights`` (STPN's weighted sum), then localized. A stream whose score
    file holds no per-step scores (written before datp kept them) takes no part; it is named
    in the protocol's ``streams``."""
    streams = [ScoreFile.load(p) for p in score_files]
    kept = [i for i, s in enumerate(streams) if s.segment_scores and s.times]
    if not kept:
        raise InputError(f"none of {', '.join(map(str, score_files))} holds per-step scores to "
                         "localize from")
    localization = localize_evaluation(
        [streams[i] for i in kept], annotations_path,
        fusion_weights=[fusion_weights[i] for i in kept], weights=weights, settings=settings,
        score_paths=[score_files[i] for i in kept])
    localization.entry["protocol"]["streams"] = [
        {"scores": str(Path(p).resolve()), "weight": w, "localized": i in kept,
         "weighted_with": weights_used(streams[i], weights)}
        for i, (p, w) in enumerate(zip(score_files, fusion_weights, strict=True))]
    return localization


def localization_entry(
    annotations: TemporalAnnotations,
    detections: Mapping[str, Sequence[Detection]],
    *,
    annotations_path: str | Path,
    settings: LocalizationSettings,
    weights: LocalizationWeights,
    weighted_with: str,
    unannotated: int,
) -> dict[str, Any]:
    """The ``localization`` entry of metrics.json: ``mAP`` (threshold -> percent),
    ``average_mAP`` per threshold set, counts, and ``protocol`` (the annotations file and its
    hash, the method and its settings, what the activation was weighted with)."""
    ground_truth = {video: annotations.videos[video].instances for video in detections}
    spans = {video: annotations.videos[video].ambiguous for video in detections
             if annotations.videos[video].ambiguous}
    metrics = localization_metrics(ground_truth, detections, ambiguous=spans or None)
    metrics["videos"] = len(detections)
    metrics["protocol"] = {
        "annotations": str(Path(annotations_path).resolve()),
        "annotations_sha256": annotations_fingerprint(annotations_path),
        "videos_annotated_not_evaluated": len(annotations.videos) - len(detections),
        "videos_evaluated_not_annotated": unannotated,
        "method": "datp.detection.localize (TCAM, multi-threshold, outer-inner contrast, "
                  "per-class NMS)",
        "weights": weights,
        "weighted_with": weighted_with,
        "settings": dataclasses.asdict(settings),
    }
    return metrics


def write_localization(out_dir: str | Path, localization: Localization) -> Path:
    """``out_dir/detections.json``, and the ``localization`` entry added to
    ``out_dir/metrics.json`` (written by the evaluation or the fusion before); returns the
    detections' path."""
    out_dir = Path(out_dir)
    path = out_dir / DETECTIONS
    DetectionFile(results=localization.detections).save(path)
    metrics_path = out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics["localization"] = localization.entry
    atomic_write_json(metrics_path, metrics)
    return path


def summary(entry: Mapping[str, Any]) -> str:
    """One line: mAP at 0.5 and each threshold set's average, in percent."""
    averages = " ".join(f"average mAP ({name}) {value:.2f}"
                        for name, value in entry["average_mAP"].items())
    return (f"localization: {entry['videos']} videos, mAP@0.5 {entry['mAP']['0.5']:.2f} "
            f"{averages}")
