"""Prediction with a head trained on features, from a feature file or from a video.

Dimension key: N segments, C classes, T steps of a feature sequence, D feature channels, F
frames of a video.

    feature file (.npy)  -> its T steps and their seconds, read as the head's training set read
                            its files (datp.data.features.open_feature_file)
    or a video file      -> its features extracted here as ``datp features`` made the head's:
                            the same backbone (a datp checkpoint's, a torchvision model by weights
                            name, or a parameter file, checked by its SHA-256), transform and
                            time grid, rounded to the stored dtype
    -> N segments at the centre step of N equal parts of the T steps (the test split's sampling,
       datp.data.feature_dataset)
    -> the head -> probabilities [C], temporal weights [N]
    -> top-k classes and the weights' peak ranges (datp.localization): in the video's frames
       and presentation seconds for a video, in steps and the steps' seconds for a file

So a prediction on a video equals the evaluation of the feature file ``datp features`` writes
for it. The result has the interface of :class:`datp.engine.predict.Prediction` (``to_dict``,
``top``, ``streams`` with their ``peaks``, ``warnings``): the JSON, the figure and the CSV row
of ``datp predict`` are written from it alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datp.checkpoint import file_sha256
from datp.choices import is_weights_name
from datp.data.features import FEATURE_SUFFIX, open_feature_file
from datp.data.sampling import MAX_SEGMENTS, eval_starts, segments_for_duration
from datp.data.video import open_video
from datp.detection_file import Detection, entries
from datp.engine.inference import forward_batch
from datp.engine.streams import Stream, check_segments
from datp.engine.visualize import strip_frame, strip_segments
from datp.errors import DataError, InputError
from datp.localization import (
    PEAK_FRACTION,
    PeakRange,
    check_peak_fraction,
    frame_seconds,
    peak_ranges,
    segment_frame_ranges,
)
from datp.scoring import ClassScore, short_video_warning, top_classes

RENAMEABLE = ("weights", "weights_file")
"""Backbone settings that name the parameter file: a renamed file is still the same backbone
(its SHA-256 says so)."""


@dataclass
class FeatureStreamPrediction:
    """What the head saw and said; positions are in units (a video's frames, or a file's
    steps)."""

    modality: str
    checkpoint: str
    probabilities: Tensor  # [C]
    weights: Tensor  # [N] temporal weights
    segment_scores: Tensor | None  # [N, C] per-segment logits
    times: Tensor  # [N] normalized time of each segment's step
    steps: Tensor  # [N] the step each segment read
    centres: np.ndarray  # [N] the middle of each segment's step, in units
    unit_ranges: np.ndarray  # [N, 2] units [first, end) of each segment's part
    peaks: list[PeakRange]
    mixture: Tensor | None = None  # [3, K] a mixture pooling's rho, mu, sigma


@dataclass
class FeaturePrediction:
    """The result of :func:`predict_features`."""

    video: str
    units: str
    """What positions count: "frames" of a video, or "feature steps" of a file."""
    num_frames: int
    """Units: the video's frames, or the file's steps."""
    fps: float | None
    classes: list[str]
    probabilities: Tensor  # [C]
    top: list[ClassScore]
    streams: list[FeatureStreamPrediction]
    unit_times: np.ndarray | None = field(default=None, repr=False)
    """float64 ``[num_frames]``: seconds at which each unit starts (None: unknown)."""
    frames: np.ndarray | None = field(default=None, repr=False)
    """uint8 ``[N, H, W, 3]``: a frame of each segment's step (a video only)."""
    warnings: list[str] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    """Weak localization (``datp.engine.predict.predict_video`` fills it in)."""

    def seconds(self, positions: Sequence[float] | np.ndarray) -> list[float] | None:
        found = frame_seconds(positions, fps=self.fps, frame_times=self.unit_times)
        return None if found is None else found.tolist()

    @property
    def duration_s(self) -> float | None:
        end = self.seconds([self.num_frames])
        return None if end is None else end[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, in the layout of ``datp.engine.predict.Prediction.to_dict``
        (``frame_*`` fields count units), with ``units`` and each segment's ``steps``."""

        def stream_dict(s: FeatureStreamPrediction) -> dict[str, Any]:
            return {
                "modality": s.modality, "checkpoint": s.checkpoint, "fusion_weight": 1.0,
                "segments": len(s.weights), "crops": 1,
                "probabilities": s.probabilities.tolist(), "weights": s.weights.tolist(),
                "times": s.times.tolist(), "centres": s.centres.tolist(),
                "centres_s": self.seconds(s.centres), "steps": s.steps.tolist(),
                "frame_indices": [int(first) for first, _ in s.unit_ranges],
                "frame_ranges": s.unit_ranges.tolist(),
                "segment_scores": None if s.segment_scores is None
                else s.segment_scores.tolist(),
                "peaks": [dataclasses.asdict(p) for p in s.peaks],
                "mixture": None if s.mixture is None else s.mixture.tolist(),
            }

        return {
            "video": self.video, "units": self.units, "num_frames": self.num_frames,
            "fps": self.fps, "duration_s": self.duration_s,
            "top": [dataclasses.asdict(c) for c in self.top], "classes": self.classes,
            "probabilities": self.probabilities.tolist(),
            "streams": [stream_dict(s) for s in self.streams], "warnings": self.warnings,
            "detections": entries(self.detections),
        }


@dataclass(frozen=True)
class Timeline:
    """A video's feature sequence and where its steps lie in units."""

    features: np.ndarray  # float32 [T, D]
    times: np.ndarray  # float64 [T] seconds of each step
    duration: float
    step_units: np.ndarray  # int64 [T, 2]: units [first, end) each step reads
    num_units: int
    unit_times: np.ndarray | None  # float64 [num_units]: seconds each unit starts
    fps: float | None
    units: str


# --- the feature sequence ------------------------------------------------------------------------

def file_timeline(path: Path, stream: Stream) -> Timeline:
    """A feature file's steps: its units are its steps, each from halfway after the previous
    step's time to halfway before the next one's."""
    sequence, settings = open_feature_file(path, stream.features.reading)
    recorded = stream.features.record.get("settings")
    if settings is not None and recorded is not None and settings != recorded:
        changed = sorted(k for k in {*settings, *recorded} if settings.get(k) != recorded.get(k))
        raise DataError(f"{path}: made with other settings than the features "
                        f"{stream.checkpoint} trained on ({', '.join(changed)})")
    channels = stream.segment_shape[0]
    features = sequence.rows(np.arange(sequence.num_steps), channels=channels)  # [T, D]
    times = sequence.times
    middles = (times[1:] + times[:-1]) / 2
    first = max(0.0, float(times[0] - (middles[0] - times[0]))) if len(times) > 1 else 0.0
    steps = np.arange(len(times), dtype=np.int64)
    return Timeline(features=features, times=times, duration=sequence.duration,
                    step_units=np.stack([steps, steps + 1], 1), num_units=len(times),
                    unit_times=np.concatenate([[first], middles]), fps=None,
                    units="feature steps")


def video_timeline(path: Path, stream: Stream) -> Timeline:
    """The features of a video extracted as the head's were made; its units are its frames."""
    from datp.features.extract import FeatureOptions, extract_video
    from datp.features.grid import TimeGrid

    record = stream.features.record
    settings = record.get("settings")
    if record.get("layout") != "datp" or not isinstance(settings, dict):
        raise InputError(
            f"{stream.checkpoint}: trained on {record.get('layout', 'unknown')} features, which "
            "do not record the backbone that made them: datp cannot extract them from a video; "
            f"predict from the video's feature file ({FEATURE_SUFFIX}) instead")
    backbone = feature_backbone(settings, stream)
    grid = {k: settings["grid"][k] for k in ("fps", "window", "stride")}
    options = FeatureOptions(grid=TimeGrid(**grid), dtype=settings["dtype"],
                             device=str(next(stream.model.parameters()).device))
    features, steps = extract_video(path, backbone, options)  # float32 [T, D]
    # As stored: the head trained on the features rounded to the folder's dtype.
    features = features.astype(settings["dtype"]).astype(np.float32)
    with open_video(path) as reader:
        num_frames, fps = reader.num_frames, reader.fps
        frame_times = getattr(reader, "frame_times", None)
    if frame_times is not None:
        frame_times = np.asarray(frame_times, dtype=np.float64) - float(frame_times[0])
    bounds = steps.step_frames()  # [T, 2]: first and last frame of each step
    return Timeline(features=features, times=steps.times, duration=steps.duration,
                    step_units=np.stack([bounds[:, 0], bounds[:, 1] + 1], 1),
                    num_units=num_frames, unit_times=frame_times, fps=fps, units="frames")


def feature_backbone(settings: dict, stream: Stream) -> Any:
    """The frozen backbone the features of ``settings`` (a datp folder's) were made with, its
    settings checked against the record: a datp checkpoint's or a parameter file (given as
    ``data.features_backbone``, its SHA-256 the recorded one), or torchvision's weights by name
    (from torch hub's cache)."""
    from datp.engine.features import checkpoint_backbone
    from datp.features.backbones import torchvision_backbone

    made = settings.get("backbone") or {}
    weights = made.get("weights")
    if weights is None:
        raise InputError(f"{stream.checkpoint}: its features were made with random parameters "
                         f"of {made.get('name')}: nothing to extract them again with")
    if "checkpoint_classes" in made:  # the backbone of a datp checkpoint
        backbone = checkpoint_backbone(_backbone_file(made, stream))
    elif is_weights_name(weights):
        backbone = torchvision_backbone(made["name"], weights=weights)
    else:
        backbone = torchvision_backbone(made["name"], weights=str(_backbone_file(made, stream)))
    for part in ("backbone", "transform"):
        ours, theirs = backbone.settings[part], settings.get(part) or {}
        changed = sorted(k for k in {*ours, *theirs} - set(RENAMEABLE)
                         if ours.get(k) != theirs.get(k))
        if changed:
            raise InputError(f"{stream.checkpoint}: the backbone found differs from the one its "
                             f"features were made with ({part}: {', '.join(changed)})")
    return backbone


def _backbone_file(made: dict, stream: Stream) -> Path:
    """``data.features_backbone``, the file whose SHA-256 the features recorded."""
    given, sha = stream.features.backbone_file, made.get("weights_sha256") or ""
    if not given:
        raise InputError(
            f"{stream.checkpoint}: its features were made with the backbone of "
            f"{made.get('weights_file')} (SHA-256 {sha[:16]}...); give that file: --set "
            "data.features_backbone=PATH")
    path = Path(given)
    if not path.is_file():
        raise DataError(f"{path}: data.features_backbone does not exist")
    found = file_sha256(path)
    if found != sha:
        raise InputError(f"{path}: not the file the features were made with (SHA-256 "
                         f"{found[:16]}..., the features recorded {sha[:16]}... of "
                         f"{made.get('weights_file')})")
    return path


# --- prediction ----------------------------------------------------------------------------------

@torch.no_grad()
def predict_features(
    path: str | Path, streams: Sequence[Stream], *, top_k: int = 5,
    fraction: float = PEAK_FRACTION, keep_frames: bool = True, segments: int | None = None,
    seconds_per_segment: float | None = None,
) -> FeaturePrediction:
    """Predict the class of a feature file (``.npy``) or of a video with a head trained on
    features (one stream: ``stream.features`` set). N is ``segments``, else one segment per
    ``seconds_per_segment`` of the sequence (at least the checkpoint's test N), else the
    checkpoint's test N. Bad input raises a ``UserError`` naming the file or the setting."""
    path = Path(path)
    if len(streams) != 1 or streams[0].features is None:
        raise InputError("a head on features predicts alone: give its one --checkpoint (fuse "
                         "feature streams with datp evaluate and datp fuse)")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    check_peak_fraction(fraction)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError(f"{path}: no such file, or an empty one")
    stream = streams[0]
    if segments is not None:  # before the backbone reads a whole video for nothing
        check_segments(stream.model, segments, stream.checkpoint)
    timeline = (file_timeline(path, stream) if path.suffix == FEATURE_SUFFIX
                else video_timeline(path, stream))
    total = len(timeline.times)
    count = segments or stream.segments
    if segments is None and seconds_per_segment is not None:
        count = segments_for_duration(timeline.duration, seconds_per_segment=seconds_per_segment,
                                      minimum=min(stream.segments, MAX_SEGMENTS))
    check_segments(stream.model, count, stream.checkpoint)  # the discrete generator refuses
    steps = eval_starts(total, count)  # [N]: the test split's steps
    times = torch.from_numpy(np.clip(timeline.times[steps] / timeline.duration, 0.0, 1.0)
                             .astype(np.float32))  # [N]
    inputs = torch.from_numpy(timeline.features[steps])  # [N, D]
    device = next(stream.model.parameters()).device
    out = forward_batch(stream.model, {"inputs": inputs[None], "times": times[None]}, device)
    parts = segment_frame_ranges(total, count)  # [N, 2] steps [first, end)
    unit_ranges = np.stack([timeline.step_units[parts[:, 0], 0],
                            timeline.step_units[parts[:, 1] - 1, 1]], 1)  # [N, 2]
    result = FeatureStreamPrediction(
        modality=stream.modality, checkpoint=str(stream.checkpoint),
        probabilities=out.log_probs[0].exp().cpu(), weights=out.weights[0].cpu(),
        segment_scores=None if out.segment_scores is None else out.segment_scores[0].cpu(),
        times=times, steps=torch.from_numpy(steps),
        centres=timeline.step_units[steps].mean(1), unit_ranges=unit_ranges,
        peaks=peak_ranges(out.weights[0].cpu(), unit_ranges, fps=timeline.fps, fraction=fraction,
                          frame_times=timeline.unit_times),
        mixture=None if out.mixture is None else out.mixture[0].cpu(),
    )
    top = top_classes(result.probabilities, stream.classes, top_k)
    warning = short_video_warning(str(path), total, segments=count, length=1,
                                  flow=False)
    frames = _strip(path, timeline, steps) if keep_frames else None
    return FeaturePrediction(
        video=str(path), units=timeline.units, num_frames=timeline.num_units, fps=timeline.fps,
        classes=list(stream.classes), probabilities=result.probabilities, top=top,
        streams=[result], unit_times=timeline.unit_times, frames=frames,
        warnings=[warning] if warning else [])


def _strip(path: Path, timeline: Timeline, steps: np.ndarray) -> np.ndarray | None:
    """The figure's frames ``[M, h, w, 3]``: up to 8 of the sampled steps' first frames, short
    side shrunk (None for a feature file: it has no frames)."""
    if timeline.units != "frames":
        return None
    shown = timeline.step_units[steps[strip_segments(len(steps))], 0]  # [M]
    with open_video(path) as reader:
        return np.stack([strip_frame(frame) for frame in reader.read(shown)])
