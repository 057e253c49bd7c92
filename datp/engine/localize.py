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

The annotations are read and checked before anything is evaluated (:func:`check_annotations`):
what ``datp check`` calls an error refuses them, what it calls a warning is one warning line.
**Classes.** The mAP averages over the model's classes that the localized videos' instances
carry: as ActivityNet's ``Eval_Detection``, a class without an instance in the ground truth
takes no part (one warning names the model's classes that have none, THUMOS14's lists with a
class's file missing), and, unlike it, an annotated label that is none of the model's classes
is left out too (named in one warning, counted in ``labels_left_out``): the model cannot
detect it, so ``Eval_Detection`` would give it AP 0 and lower the mAP by the share of such
labels. A file none of whose labels is a model class is refused.
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
    AnnotationProblem,
    TemporalAnnotations,
    annotation_problems,
    annotations_fingerprint,
    classes_without_instances,
    labels_outside,
    match_videos,
    no_video_problem,
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


# --- the annotations, checked before anything is evaluated ----------------------------------


@dataclass(frozen=True)
class CheckedAnnotations:
    """Temporal annotations read and checked for an evaluation (:func:`check_annotations`)."""

    path: Path
    annotations: TemporalAnnotations
    """Every annotated video, with only the instances of the model's classes."""
    fingerprint: str
    classes: tuple[str, ...]
    """The model's classes."""
    left_out: dict[str, int]
    """Annotated labels that are none of the model's classes -> their instances: the model
    cannot detect them, so they take no part in the mAP."""
    warnings: tuple[str, ...] = ()
    """One line each, naming the file (for the command to print)."""


def check_annotations(path: str | Path, *, classes: Sequence[str], videos: Sequence[str]
                      ) -> CheckedAnnotations:
    """The temporal annotations at ``path``, read and checked for an evaluation of ``videos``
    (dataset ids) by a model of ``classes``, before it runs. Refused with a one-line
    ``DataError``: a file that cannot be read; one with what ``datp check`` calls an error
    (the first, and how many more); one whose labels are none of ``classes``; one that names
    none of ``videos``, or whose instances in them are of no class of the model. Warnings
    (one line each): what ``datp check`` calls warnings, the labels that are none of
    ``classes`` (left out), the classes without an instance in the annotated ``videos``."""
    path = Path(path)
    annotations = read_temporal_annotations(path)
    problems = annotation_problems(annotations)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(_summed_up(errors, path))
    warnings = [_summed_up(problems, path)] if problems else []
    left_out = labels_outside(annotations, classes)
    named = ", ".join(f"{label!r} ({n} instance{'s' if n > 1 else ''})"
                      for label, n in left_out.items())
    if left_out and len(left_out) == len(annotations.labels()):
        raise DataError(f"{path}: none of its {len(left_out)} labels "
                        f"({', '.join(map(repr, left_out))}) is one of the model's "
                        f"{len(classes)} classes (e.g. {classes[0]!r})")
    if left_out:
        warnings.append(f"{path}: {len(left_out)} label(s) that are none of the model's "
                        f"{len(classes)} classes, left out of the mAP: {named}")
    checked = CheckedAnnotations(path=path, annotations=annotations.keeping_labels(classes),
                                 fingerprint=annotations_fingerprint(path),
                                 classes=tuple(classes), left_out=left_out)
    matched = matched_videos(checked, videos)
    missing = classes_without_instances(checked.annotations, classes, matched.values())
    if missing:
        warnings.append(f"{path}: {len(missing)} of the model's {len(classes)} classes have no "
                        f"instance in the {len(matched)} evaluated videos it annotates, so the "
                        f"mAP averages over the other {len(classes) - len(missing)}: "
                        f"{', '.join(missing)}")
    return dataclasses.replace(checked, warnings=tuple(warnings))


def _summed_up(problems: Sequence[AnnotationProblem], path: Path) -> str:
    """The first of ``problems`` and how many more, in one line, pointing at datp check."""
    first, more = problems[0], len(problems) - 1
    check = f"`datp check DATASET --temporal-annotations {path}`"
    tail = f"and {more} more; {check} lists them all" if more else f"{check} checks the file"
    return f"{first.where}: {first.what} ({tail})"


def matched_videos(checked: CheckedAnnotations, videos: Sequence[str]) -> dict[str, str]:
    """Evaluated id -> annotated id (:func:`match_videos`); a ``DataError`` when the
    annotations name none of ``videos`` or hold no instance of the model's classes in them."""
    unusable = no_video_problem(checked.annotations, videos)
    if unusable is not None:
        raise DataError(f"{checked.path}: {unusable}")
    matched = match_videos(videos, checked.annotations.videos)
    if not any(checked.annotations.videos[a].instances for a in matched.values()):
        raise DataError(f"{checked.path}: the {len(matched)} evaluated videos it annotates hold "
                        f"no instance of the model's {len(checked.classes)} classes")
    return matched


def _checked(annotations: str | Path | CheckedAnnotations, streams: Sequence[ScoreFile]
             ) -> CheckedAnnotations:
    if isinstance(annotations, CheckedAnnotations):
        return annotations
    checked = check_annotations(annotations, classes=streams[0].classes,
                                videos=streams[0].videos)
    for warning in checked.warnings:  # no command to print them
        log.warning("%s", warning)
    return checked


# --- matching and durations ------------------------------------------------------------------


def dataset_durations(dataset: Any, videos: Sequence[str]) -> dict[str, float]:
    """Seconds of each of ``videos`` (dataset ids) as its source says: frames / fps, or a
    feature file's recorded duration. For
    annotations without durations (THUMOS14's lists); ``DataError`` for a source without a
    frame rate (a frame folder)."""
    wanted = set(videos)
    features = getattr(dataset, "features", None)
    if features is not None:  # a head's dataset: each feature file records its video's length
        return {item.path: features.open(item.path).duration for item in dataset.items
                if item.path in wanted}
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
    annotations: str | Path | CheckedAnnotations,
    *,
    fusion_weights: Sequence[float] = (1.0,),
    weights: LocalizationWeights = "pooling",
    settings: LocalizationSettings = DEFAULT_SETTINGS,
    durations_of: Callable[[list[str]], dict[str, float]] | None = None,
    score_paths: Sequence[str | Path] = (),
) -> Localization:
    """Localize the videos of evaluated ``streams`` (one score file, or several to fuse) and
    score the detections against the temporal annotations (a path, checked here by
    :func:`check_annotations` with its warnings logged, or checked before the evaluation).
    ``durations_of(evaluated ids)`` gives the seconds of videos whose annotations have none."""
    if weights not in WEIGHTS:
        raise InputError(f"localization weights must be one of {', '.join(WEIGHTS)}, got "
                         f"{weights!r}")
    names = list(score_paths) or [f"score file {s + 1}" for s in range(len(streams))]
    for stream, name in zip(streams, names, strict=True):
        _per_step(stream, name)
    checked = _checked(annotations, streams)
    evaluated = streams[0].videos
    matched = matched_videos(checked, evaluated)
    durations = _durations(checked, matched, durations_of)
    detections = localize_videos(streams, fusion_weights=fusion_weights, videos=matched,
                                 durations=durations, weights=weights, settings=settings)
    entry = localization_entry(checked, detections, settings=settings, weights=weights,
                               weighted_with=weights_used(streams[0], weights),
                               unannotated=len(evaluated) - len(matched))
    return Localization(detections=detections, entry=entry)


def _durations(checked: CheckedAnnotations, matched: Mapping[str, str],
               durations_of: Callable[[list[str]], dict[str, float]] | None
               ) -> dict[str, float]:
    """Annotated id -> seconds, from the annotations, else ``durations_of(evaluated ids)``."""
    annotated = {v: checked.annotations.videos[a].duration for v, a in matched.items()}
    missing = [v for v, duration in annotated.items() if duration is None]
    probed: dict[str, float] = {}
    if missing:
        if durations_of is None:  # datp fuse: it reads score files, no video
            raise DataError(f"{checked.path}: gives no duration for {len(missing)} videos "
                            f"(e.g. {matched[missing[0]]!r}), and fusing reads no video to "
                            "tell it; localize each stream with datp evaluate --localization, "
                            "or give an ActivityNet-style JSON with durations")
        probed = durations_of(missing)
        for video in missing:
            if video not in probed:
                raise DataError(f"{video}: no duration in the annotations or the video")
    return {matched[v]: probed[v] if duration is None else duration
            for v, duration in annotated.items()}


def localizing_streams(streams: Sequence[ScoreFile], score_files: Sequence[str | Path]
                       ) -> list[int]:
    """The indices of the streams whose score files hold per-step scores to localize from
    (one written before datp kept them holds none); ``InputError`` when none does."""
    kept = [i for i, s in enumerate(streams) if s.segment_scores and s.times]
    if not kept:
        raise InputError(f"none of {', '.join(map(str, score_files))} holds per-step scores to "
                         "localize from")
    return kept


def check_fusion(score_files: Sequence[str | Path], annotations: str | Path
                 ) -> tuple[list[ScoreFile], CheckedAnnotations]:
    """What ``datp fuse --localization`` reads and checks before fusing: the score files
    (one at least with per-step scores, :func:`localizing_streams`) and the annotations
    against their classes and videos (:func:`check_annotations`)."""
    streams = [ScoreFile.load(p) for p in score_files]
    localizing_streams(streams, score_files)
    checked = check_annotations(annotations, classes=streams[0].classes,
                                videos=streams[0].videos)
    _durations(checked, matched_videos(checked, streams[0].videos), None)  # before fusing
    return streams, checked


def localize_fusion(
    score_files: Sequence[str | Path],
    fusion_weights: Sequence[float],
    annotations: str | Path | CheckedAnnotations,
    *,
    weights: LocalizationWeights = "pooling",
    settings: LocalizationSettings = DEFAULT_SETTINGS,
    streams: Sequence[ScoreFile] | None = None,
) -> Localization:
    """:func:`localize_evaluation` of fused streams: each stream's temporal class activation,
    fused with ``fusion_weights`` (STPN's weighted sum), then localized. A stream whose score
    file holds no per-step scores (written before datp kept them) takes no part; it is named
    in the protocol's ``streams`` (:func:`fusion_note` says so in words). ``streams``: the
    score files already loaded (:func:`check_fusion`)."""
    streams = list(streams) if streams is not None else [ScoreFile.load(p) for p in score_files]
    kept = localizing_streams(streams, score_files)
    localization = localize_evaluation(
        [streams[i] for i in kept], _checked(annotations, streams),
        fusion_weights=[fusion_weights[i] for i in kept], weights=weights, settings=settings,
        score_paths=[score_files[i] for i in kept])
    localization.entry["protocol"]["streams"] = [
        {"scores": str(Path(p).resolve()), "weight": w, "localized": i in kept,
         "weighted_with": weights_used(streams[i], weights)}
        for i, (p, w) in enumerate(zip(score_files, fusion_weights, strict=True))]
    return localization


def localization_entry(
    checked: CheckedAnnotations,
    detections: Mapping[str, Sequence[Detection]],
    *,
    settings: LocalizationSettings,
    weights: LocalizationWeights,
    weighted_with: str,
    unannotated: int,
) -> dict[str, Any]:
    """The ``localization`` entry of metrics.json: ``mAP`` (threshold -> percent),
    ``average_mAP`` per threshold set, counts, the classes it averages over
    (``scored_classes``: the model's classes that the localized videos' instances carry, as
    ActivityNet's ``Eval_Detection`` takes the ground truth's classes), the model's classes it
    leaves out for want of an instance (``classes_without_instances``), the annotated labels
    that are no class of the model (``labels_left_out``: label -> instances in the file), and
    ``protocol`` (the annotations file and its hash, the method and its settings, what the
    activation was weighted with)."""
    annotations = checked.annotations
    ground_truth = {video: annotations.videos[video].instances for video in detections}
    spans = {video: annotations.videos[video].ambiguous for video in detections
             if annotations.videos[video].ambiguous}
    metrics = localization_metrics(ground_truth, detections, ambiguous=spans or None)
    metrics["videos"] = len(detections)
    carried = {i.label for instances in ground_truth.values() for i in instances}
    metrics["scored_classes"] = [name for name in checked.classes if name in carried]
    metrics["classes_without_instances"] = [n for n in checked.classes if n not in carried]
    metrics["labels_left_out"] = dict(checked.left_out)
    metrics["protocol"] = {
        "annotations": str(checked.path.resolve()),
        "annotations_sha256": checked.fingerprint,
        "videos_annotated_not_evaluated": len(annotations.videos) - len(detections),
        "videos_evaluated_not_annotated": unannotated,
        "method": "datp.detection.localize (TCAM, multi-threshold, outer-inner contrast, "
                  "per-class NMS)",
        "weights": weights,
        "weighted_with": weighted_with,
        "settings": dataclasses.asdict(settings),
    }
    return metrics


def claim_localization(out_dir: str | Path, checked: CheckedAnnotations | None, *,
                       weights: str) -> None:
    """Refuse, in one line, a report folder whose localization this run would replace (other
    annotations or weights) or leave stale beside a new metrics.json (no ``--localization``):
    no evaluation or fusion replaces another's detections. The same localization again rewrites
    its own."""
    out_dir = Path(out_dir)
    if not (out_dir / DETECTIONS).is_file():
        return
    try:
        earlier = json.loads((out_dir / "metrics.json").read_text())["localization"]["protocol"]
    except (OSError, ValueError, KeyError, TypeError):
        earlier = None
    if checked is None:
        found = "a localization, which a report without --localization would leave stale"
    elif not isinstance(earlier, dict):
        found = "detections that its metrics.json does not describe"
    elif earlier.get("annotations_sha256") != checked.fingerprint:
        found = f"a localization against other annotations ({earlier.get('annotations')})"
    elif earlier.get("weights") != weights:
        found = f"a localization weighted with {earlier.get('weights')!r}, not {weights!r}"
    else:
        return
    raise InputError(f"{out_dir} holds {found} ({DETECTIONS}); choose another --out, or move "
                     "that report away")


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
    """One line: the videos and classes scored, mAP at 0.5 and each threshold set's average,
    in percent."""
    averages = " ".join(f"average mAP ({name}) {value:.2f}"
                        for name, value in entry["average_mAP"].items())
    return (f"localization: {entry['videos']} videos, {entry['classes']} classes, "
            f"mAP@0.5 {entry['mAP']['0.5']:.2f} {averages}")


def fusion_note(score_files: Sequence[str | Path], entry: Mapping[str, Any]) -> str | None:
    """One line naming the streams a fused localization (its ``entry``) used, when some
    ``score_files`` took no part for want of per-step scores; None when all did."""
    localized = [s["localized"] for s in entry["protocol"]["streams"]]
    if all(localized):
        return None
    used = ", ".join(str(p) for p, kept in zip(score_files, localized, strict=True) if kept)
    left = [str(p) for p, kept in zip(score_files, localized, strict=True) if not kept]
    verb = "holds" if len(left) == 1 else "hold"
    return (f"the fused localization uses the per-step scores of {used} alone; "
            f"{', '.join(left)} {verb} none")
