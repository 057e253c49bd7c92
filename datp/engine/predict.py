"""Prediction with trained checkpoints on one video file of any length, the weak localization
DATP gives, and detections.

Dimension key: N segments, C classes, V views (test crops), D_in input channels (3 RGB, 2L flow),
L flow-stack length, T frames, H, W image size, S network input side, F reduced features,
K Gaussians, G grid points.

    video file -> N segments sampled as the test split samples them (eval_starts), N the
                  checkpoint's test N, a count, or one per second (``--segments auto``)
               -> read a chunk of segments at a time (RGB decoded as a stream into one buffer,
                  datp.data.stream; flow computed for the chunk's stacks only), transformed
                  (EvalTransform), through the backbone (TSN.segment_outputs): per segment
                  only its logits [V, C] and its reduced features [V, F] are kept
               -> each stream's pooling over all N segments at once (TSN.pool; a mixture of
                  Gaussians runs at any N, the discrete generator refuses another N)
                  -> probabilities [C], temporal weights [N], a mixture's (rho, mu, sigma)
               -> late fusion (RGB 1 : flow 1.5) -> top-k classes
               -> peak ranges: runs of segments whose weight is at least ``fraction`` of the
                  largest, in frames and seconds (the paper's Fig. 3, on one video); seconds
                  from the frames' presentation times, so a variable frame rate is right
               -> detections: each stream's temporal class activation (the mixture evaluated
                  on a dense grid, else the per-step weights), fused, thresholded, scored,
                  suppressed (datp.detection)

Memory: the frames of one chunk (:data:`CHUNK_SEGMENTS`), per segment a few hundred numbers,
the reader's packet index and at most :data:`STRIP_FRAMES` small frames for the figure; not
the video (benchmarks/long_video.py measures a 60-minute video against its first minute).

Each stream is rebuilt from the configuration saved in its checkpoint (``datp.engine.streams``),
flow is computed on demand by ``datp.flow.on_demand``, and the segments are sampled, read and
transformed as ``datp evaluate`` reads the test split (the same ``eval_starts``, reader and
``EvalTransform``), so a prediction on a file equals the evaluation of that file. Streams are
fused as probabilities (``datp fuse --softmax``): each stream's pooled vector becomes a
distribution with ``pooled_log_probabilities``, and the fused distribution is their weighted
mean, well defined whether a stream pooled logits or probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from datp.data import functional as F
from datp.data.dataset import MODALITIES
from datp.data.sampling import MAX_SEGMENTS, eval_starts, normalized_times, segments_for_duration
from datp.data.stream import stream_frames
from datp.data.video import VideoReader, open_video, presentation_times
from datp.detection import (
    Detection,
    LocalizationSettings,
    Mixture,
    StepScores,
    localize_streams,
)
from datp.detection_file import entries
from datp.engine.inference import BatchResult, crops_result
from datp.engine.streams import Stream, check_segments, check_streams
from datp.engine.visualize import strip_frame, strip_segments
from datp.errors import DataError, InputError
from datp.flow.backends import FlowBackend, build_backend
from datp.flow.on_demand import ComputedFlow, Progress
from datp.localization import (
    PEAK_FRACTION,
    PeakRange,
    check_peak_fraction,
    frame_seconds,
    peak_ranges,
    segment_frame_ranges,
)
from datp.scoring import (
    FUSION_WEIGHTS,
    ClassScore,
    fuse_probabilities,
    short_video_warning,
    top_classes,
    validate_fusion_weights,
)

if TYPE_CHECKING:
    from datp.engine.predict_features import FeaturePrediction

log = logging.getLogger(__name__)

DEFAULT_LOCALIZATION = LocalizationSettings()
"""datp.detection's conventions (its module docstring)."""


# --- reading a video as a stream of segments ---------------------------------------------------

CHUNK_SEGMENTS = 32
"""Segments read, transformed and run through the backbone at a time: what a prediction holds
of the video's pixels at once (32 frames of 1080p are 200 MB, of 320x240 7 MB)."""


@dataclass
class StreamedSegments:
    """What one stream read of a video, a chunk of segments at a time: per-segment outputs for
    every view, never the frames (but the few for the figure)."""

    logits: Tensor
    """[V, N, C] per-segment logits of each test view (crop)."""
    features: Tensor | None
    """[V, N, F] what the pooling reads of each segment, reduced per segment (None: nothing)."""
    times: Tensor
    """[N] normalized time of each segment, as the test split samples it."""
    starts: np.ndarray
    """int64 [N] first frame (RGB) or flow field of each segment."""
    num_units: int
    """Frames (RGB) or flow fields the segments were sampled from."""
    num_frames: int
    declared_frames: int | None
    fps: float | None
    frame_times: np.ndarray | None
    """float64 [num_frames] presentation times in seconds, or None when the source has none."""
    strip: np.ndarray | None
    """uint8 [M, h, w, 3]: the frame of up to :data:`STRIP_FRAMES` segments (RGB only)."""


def open_source(path: Path, stream: Stream, *, flow_backend: Any = None,
                flow_short_side: int | None = None, progress: Progress | None = None) -> Any:
    """The source ``stream`` reads ``path`` from: the video's frames, or its flow computed on
    demand for the segments read (``datp.flow.on_demand``)."""
    if stream.modality == "rgb":
        return open_video(path, decoder=stream.decoder)
    if flow_backend is None:
        raise ValueError("a flow stream needs a flow backend (datp.flow.build_backend)")
    return ComputedFlow(path, backend=flow_backend, short_side=flow_short_side,
                        progress=progress, decoder=stream.decoder)


def video_duration(source: Any) -> float | None:
    """Seconds of the video a source reads: its presentation times, else frames / fps."""
    frames = getattr(source, "video_frames", source.num_frames)
    times = getattr(source, "frame_times", None)
    if times is not None and len(times) == frames and source.fps:
        return float(times[-1] - times[0]) + 1.0 / source.fps
    return frames / source.fps if source.fps else None


def segment_count(source: Any, stream: Stream, *, segments: int | None,
                  seconds_per_segment: float | None) -> int:
    """N for this video: ``segments`` when given, else one per ``seconds_per_segment`` of its
    duration (at least the checkpoint's test N, at most ``MAX_SEGMENTS``), else the
    checkpoint's test N."""
    if segments is not None:
        if not 1 <= segments <= MAX_SEGMENTS:
            raise InputError(f"segments must lie in [1, {MAX_SEGMENTS}], got {segments}")
        return segments
    if seconds_per_segment is None:
        return stream.segments
    duration = video_duration(source)
    if duration is None:
        raise DataError(f"{source.path}: no frame rate, so no duration to take segments from; "
                        "give --segments a count")
    return segments_for_duration(duration, seconds_per_segment=seconds_per_segment,
                                 minimum=min(stream.segments, MAX_SEGMENTS))


def _chunks(source: Any, stream: Stream, starts: np.ndarray, chunk: int
            ) -> Iterator[tuple[int, Tensor]]:
    """``(first, uint8 [n, D_in, H, W])`` of the segments ``starts`` a chunk at a time; RGB from
    a ``VideoReader`` decoded into one reused buffer (``datp.data.stream``)."""
    if stream.modality == "rgb" and isinstance(source, VideoReader):
        for part in stream_frames(source, starts, chunk_frames=chunk):
            yield part.first, torch.from_numpy(part.frames).permute(0, 3, 1, 2)
        return
    read = MODALITIES[stream.modality].read
    for first in range(0, len(starts), chunk):
        yield first, read(source, starts[first:first + chunk], stream.flow_length)


@torch.no_grad()
def stream_segments(
    path: str | Path,
    stream: Stream,
    *,
    segments: int | None = None,
    seconds_per_segment: float | None = None,
    flow_backend: Any = None,
    flow_short_side: int | None = None,
    progress: Progress | None = None,
    chunk_segments: int = CHUNK_SEGMENTS,
) -> StreamedSegments:
    """Read one video as ``stream``'s test split samples it (``eval_starts`` at N segments,
    :func:`segment_count`) and run the per-segment part of its model
    (``TSN.segment_outputs``) ``chunk_segments`` at a time: decoding, transform and backbone
    hold one chunk, whatever the video's length; what is kept per segment is its logits and
    its reduced features for the pooling. Bad input raises ``DataError`` naming the file."""
    path = Path(path)
    if chunk_segments < 1:
        raise ValueError(f"chunk_segments must be >= 1, got {chunk_segments}")
    model = stream.model
    device = next(model.parameters()).device
    source = open_source(path, stream, flow_backend=flow_backend,
                         flow_short_side=flow_short_side, progress=progress)
    try:
        count = segment_count(source, stream, segments=segments,
                              seconds_per_segment=seconds_per_segment)
        check_segments(model, count, stream.checkpoint)  # the discrete generator refuses
        num_units, length = source.num_frames, stream.flow_length
        starts = eval_starts(num_units, count, length=length)  # [N]
        shown = set(strip_segments(count).tolist()) if stream.modality == "rgb" else set()
        strip: list[np.ndarray] = []
        logits, features = [], []
        for first, raw in _chunks(source, stream, starts, chunk_segments):
            strip += [strip_frame(raw[i].permute(1, 2, 0).numpy()) for i in range(len(raw))
                      if first + i in shown]
            views = stream.transform(raw).to(device)  # [V, n, D_in, S, S]
            if views.dtype == torch.uint8:
                views = F.normalize_on(views)
            chunk_logits, chunk_features = model.segment_outputs(views, reduce=True)
            logits.append(chunk_logits.float().cpu())  # [V, n, C]
            if chunk_features is not None:
                features.append(chunk_features.float().cpu())  # [V, n, F]
        return StreamedSegments(
            logits=torch.cat(logits, dim=1),
            features=torch.cat(features, dim=1) if features else None,
            times=torch.from_numpy(normalized_times(starts, num_frames=num_units,
                                                    length=length)),
            starts=starts, num_units=num_units,
            num_frames=getattr(source, "video_frames", num_units),
            declared_frames=getattr(source, "declared_frames", None), fps=source.fps,
            frame_times=getattr(source, "frame_times", None),
            strip=np.stack(strip) if strip else None,
        )
    finally:
        source.close()


def read_segments(path: str | Path, stream: Stream) -> dict[str, Tensor]:
    """The test sample of a short video for ``stream`` at its test N, at once, as the test split
    reads it: ``inputs`` ``[V, N, D_in, S, S]`` (``stream.transform``'s), ``times [N]``,
    ``frame_indices [N]`` (what ``datp export`` checks an exported model on). RGB streams."""
    with open_video(Path(path), decoder=stream.decoder) as source:
        starts = eval_starts(source.num_frames, stream.segments, length=stream.flow_length)
        raw = MODALITIES[stream.modality].read(source, starts, stream.flow_length)
        return {"inputs": stream.transform(raw), "frame_indices": torch.from_numpy(starts),
                "times": torch.from_numpy(normalized_times(starts, num_frames=source.num_frames,
                                                           length=stream.flow_length))}


def pool_segments(stream: Stream, streamed: StreamedSegments) -> BatchResult:
    """The pooling part of ``stream``'s model over every segment at once (the MoG at any N):
    one result for the video, its views' pooled vectors averaged as evaluation does."""
    device = next(stream.model.parameters()).device
    views = streamed.logits.shape[0]
    features = None if streamed.features is None else streamed.features.to(device)
    times = streamed.times.to(device).expand(views, -1)  # [V, N]
    with torch.no_grad():
        out = stream.model.pool(streamed.logits.to(device), features, times)
    return crops_result(out, views, pool=stream.model.pooling.pool)


# --- the flow a flow stream is computed with ------------------------------------------------------


@dataclass(frozen=True)
class FlowSettings:
    """How the flow of a flow stream is computed for prediction: each setting as the user gave
    it, else as the stream's checkpoint recorded of its training flow's extraction (``datp
    flow``), else the torch TV-L1 at TSN's 340x256."""

    backend: str
    short_side: int | None
    """The short side frames are resized to before flow (None: 340x256)."""
    from_record: tuple[str, ...]
    """The settings taken from the checkpoint's record: ``"backend"``, ``"size"``."""

    def build_backend(self, device: str) -> FlowBackend:
        """The backend, eager: the few fields of one video do not repay a compile (about a
        minute)."""
        return build_backend(self.backend, device=device, compiled=False)


def flow_settings(
    streams: Sequence[Stream], *, backend: str | None = None, short_side: int | None = None,
) -> FlowSettings | None:
    """The flow settings of ``streams`` (None when none is a flow stream): ``backend`` and
    ``short_side`` when given, else what the flow stream's checkpoint recorded."""
    flow_streams = [s for s in streams if s.modality == "flow"]
    if not flow_streams:
        return None
    recorded = flow_streams[0].flow_extraction or {}
    # Each setting on its own: what the user gave, else what training recorded.
    return FlowSettings(
        backend=backend or recorded.get("backend", "torch"),
        short_side=short_side if short_side is not None else recorded.get("short_side"),
        from_record=tuple(name for name, given in (("backend", backend), ("size", short_side))
                          if given is None and recorded),
    )


# --- prediction -----------------------------------------------------------------------------------


@dataclass
class StreamPrediction:
    """What one stream saw and said."""

    modality: str
    checkpoint: str
    fusion_weight: float
    crops: int
    probabilities: Tensor  # [C]
    weights: Tensor  # [N] temporal weights (of the first crop)
    segment_scores: Tensor | None  # [N, C] per-segment logits
    times: Tensor  # [N] normalized time of each segment
    centres: Tensor  # [N] the centre of each segment's frame or stack, in frames
    frame_indices: Tensor  # [N] first frame (RGB) or flow field of each segment
    frame_ranges: np.ndarray  # [N, 2] frames [first, end) each segment was sampled from
    peaks: list[PeakRange]
    mixture: Tensor | None = None  # [3, K] a mixture pooling's rho, mu, sigma


@dataclass
class Prediction:
    """The result of :func:`predict_video`."""

    video: str
    num_frames: int
    fps: float | None
    classes: list[str]
    probabilities: Tensor  # [C] fused
    top: list[ClassScore]
    streams: list[StreamPrediction]
    frame_times: np.ndarray | None = field(default=None, repr=False)
    """float64 ``[num_frames]``: each frame's presentation time in seconds (None: unknown, and
    seconds are ``frame / fps``)."""
    frames: np.ndarray | None = field(default=None, repr=False)
    """uint8 ``[M, h, w, 3]``: the frame the first stream sampled in each of up to
    :data:`STRIP_FRAMES` segments spread over the video (every segment when N is no more; the
    first frame of the stack for a flow stream), short side at most :data:`STRIP_SIDE`."""
    warnings: list[str] = field(default_factory=list)
    """What the prediction should be read with: a truncated file, a video too short for N."""
    detections: list[Detection] = field(default_factory=list)
    """Weak localization of the video, best first (:func:`datp.detection.detect`)."""

    @property
    def duration_s(self) -> float | None:
        end = self.seconds([self.num_frames])
        return None if end is None else end[0]

    def seconds(self, positions: Sequence[float] | np.ndarray) -> list[float] | None:
        """Seconds of frame ``positions`` (:func:`datp.localization.frame_seconds`)."""
        found = frame_seconds(positions, fps=self.fps, frame_times=self.frame_times)
        return None if found is None else found.tolist()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no tensors, no frames)."""

        def stream_dict(s: StreamPrediction) -> dict[str, Any]:
            scores = None if s.segment_scores is None else s.segment_scores.tolist()
            return {
                "modality": s.modality,
                "checkpoint": s.checkpoint,
                "fusion_weight": s.fusion_weight,
                "segments": len(s.weights),
                "crops": s.crops,
                "probabilities": s.probabilities.tolist(),
                "weights": s.weights.tolist(),
                "times": s.times.tolist(),
                "centres": s.centres.tolist(),
                "centres_s": self.seconds(s.centres.numpy()),
                "frame_indices": s.frame_indices.tolist(),
                "frame_ranges": s.frame_ranges.tolist(),
                "segment_scores": scores,
                "peaks": [dataclasses.asdict(p) for p in s.peaks],
                "mixture": None if s.mixture is None else s.mixture.tolist(),
            }

        return {
            "video": self.video,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "top": [dataclasses.asdict(c) for c in self.top],
            "classes": self.classes,
            "probabilities": self.probabilities.tolist(),
            "streams": [stream_dict(s) for s in self.streams],
            "warnings": self.warnings,
            "detections": entries(self.detections),  # as detections.json lists them
        }


@torch.no_grad()
def predict_video(
    path: str | Path,
    streams: Sequence[Stream],
    *,
    top_k: int = 5,
    fusion_weights: Sequence[float] | None = None,
    fraction: float = PEAK_FRACTION,
    flow_backend: Any = None,
    flow_short_side: int | None = None,
    progress: Progress | None = None,
    keep_frames: bool = True,
    segments: int | None = None,
    seconds_per_segment: float | None = None,
    localization: LocalizationSettings | None = DEFAULT_LOCALIZATION,
    chunk_segments: int = CHUNK_SEGMENTS,
) -> Prediction | FeaturePrediction:
    """Predict the class of the video at ``path`` with one stream or an RGB and a flow stream,
    and localize it.

    N is ``segments``, else one segment per ``seconds_per_segment`` of the video (at least the
    checkpoint's test N), else the checkpoint's test N; the video is read ``chunk_segments``
    at a time (:func:`stream_segments`), so memory does not grow with its length, and the
    pooling weights every segment. ``fusion_weights`` default to :data:`FUSION_WEIGHTS` by
    modality. The flow of a flow stream is computed with ``flow_backend``
    (``datp.flow.build_backend``) for the sampled stacks only; ``progress(done, total)`` is
    called as flow fields are computed. ``localization`` (None: none) turns the per-step
    scores and temporal weights into detections (:func:`datp.detection.detect`, the streams'
    activations fused). Bad input raises ``DataError`` naming the file.
    """
    if any(s.features is not None for s in streams):  # a head on features: its own module
        return _predict_head(path, streams, top_k=top_k, fraction=fraction,
                             keep_frames=keep_frames, segments=segments,
                             seconds_per_segment=seconds_per_segment, localization=localization)
    path = Path(path)
    weights = _checked_request(path, streams, top_k=top_k, fusion_weights=fusion_weights,
                               fraction=fraction)
    classes = streams[0].classes
    prediction, strip = _each_stream(
        path, streams, weights, fraction=fraction, segments=segments,
        seconds_per_segment=seconds_per_segment, flow_backend=flow_backend,
        flow_short_side=flow_short_side, progress=progress, chunk_segments=chunk_segments)
    prediction.top = top_classes(prediction.probabilities, classes, top_k)
    if keep_frames:
        prediction.frames = (strip if strip is not None
                             else _strip_of(path, streams, prediction.streams))
    if localization is not None:
        prediction.detections = _detections(prediction, weights, localization)
    return prediction


def _each_stream(path: Path, streams: Sequence[Stream], weights: Sequence[float], *,
                 fraction: float, **reading: Any) -> tuple[Prediction, np.ndarray | None]:
    """Each stream's segments read (:func:`stream_segments` with ``reading``) and pooled, the
    streams' probabilities fused (no top classes yet); and the first stream's strip of frames
    (None for a flow stream)."""
    results: list[StreamPrediction] = []
    warnings: list[str] = []
    strip: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    for stream, weight in zip(streams, weights, strict=True):
        streamed = stream_segments(path, stream, **reading)
        if frame_times is None:
            frame_times = _frame_times(path, streamed)
        warnings += [w for w in _sample_warnings(path, streamed, stream) if w not in warnings]
        results.append(_stream_prediction(stream, streamed, weight=weight, fraction=fraction,
                                          frame_times=frame_times))
        if strip is None:
            strip = streamed.strip
    fused = fuse_probabilities([r.probabilities for r in results], weights)  # [C]
    prediction = Prediction(
        video=str(path), num_frames=streamed.num_frames, fps=streamed.fps,
        frame_times=frame_times, classes=list(streams[0].classes), probabilities=fused, top=[],
        streams=results, warnings=warnings,
    )
    return prediction, strip


def _predict_head(path: str | Path, streams: Sequence[Stream], *,
                  localization: LocalizationSettings | None, **options: Any
                  ) -> FeaturePrediction:
    """:func:`datp.engine.predict_features.predict_features`, localized as a video is."""
    from datp.engine.predict_features import predict_features

    found = predict_features(path, streams, **options)
    if localization is not None:
        found.detections = _detections(found, [1.0], localization)
    return found


def _detections(prediction: Prediction | FeaturePrediction, weights: Sequence[float],
                settings: LocalizationSettings) -> list[Detection]:
    """The video's detections: each stream's temporal class activation (its mixture on the
    grid, else its per-step weights), fused with the streams' weights, then
    :func:`datp.detection.detect` with the fused probabilities. None without a duration."""
    duration = prediction.duration_s
    streams = prediction.streams
    if not duration or any(s.segment_scores is None for s in streams):
        prediction.warnings.append(f"{prediction.video}: not localized (no duration or no "
                                   "per-step scores)")
        return []
    return localize_streams(
        [StepScores(s.segment_scores, s.times, s.weights if s.mixture is None
                    else Mixture(*s.mixture)) for s in streams],
        fusion_weights=weights, duration=duration, classes=prediction.classes,
        video_probabilities=prediction.probabilities, settings=settings)


def _checked_request(
    path: Path, streams: Sequence[Stream], *, top_k: int, fusion_weights: Sequence[float] | None,
    fraction: float,
) -> list[float]:
    """The fusion weights of a prediction, once its arguments and file are checked."""
    check_streams(streams)
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    weights = validate_fusion_weights(
        fusion_weights or [FUSION_WEIGHTS[s.modality] for s in streams],
        option="fusion_weights", num_streams=len(streams),
    )
    check_peak_fraction(fraction)
    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, not a video")
    if path.suffix == ".npy":  # not a video: what a head on features reads
        raise InputError(f"{path}: a feature file, which a model trained on features reads; "
                         f"{streams[0].checkpoint} was trained on frames: give it a video")
    return weights


def _frame_times(path: Path, streamed: StreamedSegments) -> np.ndarray | None:
    """Each frame's presentation time in seconds, or None where they are not the frames
    counted here (the seconds then come from the frame rate)."""
    frame_times = streamed.frame_times
    if frame_times is None:  # a source without time stamps (flow computed here)
        frame_times = presentation_times(path)
    if frame_times is not None and len(frame_times) != streamed.num_frames:
        frame_times = None
    return frame_times


def _stream_prediction(
    stream: Stream, streamed: StreamedSegments, *, weight: float, fraction: float,
    frame_times: np.ndarray | None,
) -> StreamPrediction:
    """One stream's pooling over every segment of ``streamed``, with its weight peaks."""
    out = pool_segments(stream, streamed)
    flow = stream.modality == "flow"
    count = len(streamed.starts)
    frame_ranges = segment_frame_ranges(streamed.num_units, count, length=stream.flow_length,
                                        flow=flow)
    times = streamed.times.double()
    return StreamPrediction(
        modality=stream.modality,
        checkpoint=str(stream.checkpoint),
        fusion_weight=float(weight),
        crops=streamed.logits.shape[0],
        probabilities=out.log_probs[0].exp().cpu(),
        weights=out.weights[0].cpu(),
        segment_scores=None if out.segment_scores is None else out.segment_scores[0].cpu(),
        times=streamed.times.float(),
        # times are (start + L / 2) / units; flow field j lies between frames j and j + 1
        centres=times * streamed.num_units + (0.5 if flow else 0.0),
        frame_indices=torch.from_numpy(streamed.starts),
        frame_ranges=frame_ranges,
        peaks=peak_ranges(out.weights[0].cpu(), frame_ranges, fps=streamed.fps,
                          fraction=fraction, frame_times=frame_times),
        mixture=None if out.mixture is None else out.mixture[0].cpu(),
    )


def _strip_of(path: Path, streams: Sequence[Stream], results: list[StreamPrediction]
              ) -> np.ndarray:
    """The figure's frames for a flow stream alone: the first frame of up to
    :data:`STRIP_FRAMES` of its stacks."""
    chosen = results[0].frame_indices.numpy()[strip_segments(len(results[0].times))]
    with open_video(path, decoder=streams[0].decoder) as reader:
        return np.stack([strip_frame(frame) for frame in reader.read(chosen)])


def _sample_warnings(path: Path, streamed: StreamedSegments, stream: Stream) -> list[str]:
    """A file shorter than its container says (truncated), or too short for N segments."""
    found = []
    declared, frames = streamed.declared_frames, streamed.num_frames
    if declared and declared > frames:
        found.append(f"{path}: truncated: the container declares {declared} frames, only "
                     f"{frames} are there")
    short = short_video_warning(str(path), streamed.num_units, segments=len(streamed.starts),
                                length=stream.flow_length, flow=stream.modality == "flow")
    if short is not None:
        found.append(short)
    return found
