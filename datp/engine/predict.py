"""Prediction with trained checkpoints on one video file, and the weak localization DATP gives.

Dimension key: N segments, C classes, V views (test crops), D_in input channels (3 RGB, 2L flow),
L flow-stack length, T frames, H, W image size, S network input side.

    video file -> N segments sampled as the test split samples them (datp.data.dataset)
               -> flow computed for the sampled stacks only, when a flow stream is given
               -> each stream's TSN -> probabilities [C], temporal weights [N]
               -> late fusion (RGB 1 : flow 1.5) -> top-k classes
               -> peak ranges: runs of segments whose weight is at least ``fraction`` of the
                  largest, in frames and seconds (the paper's Fig. 3, on one video); seconds
                  from the frames' presentation times, so a variable frame rate is right

Each stream is rebuilt from the configuration saved in its checkpoint (``datp.engine.streams``),
flow is computed on demand by ``datp.flow.on_demand``, and the video goes through the same
``VideoDataset`` and ``EvalTransform`` that ``datp evaluate`` uses, so a prediction on a file
equals the evaluation of that file. Streams are fused as probabilities (``datp fuse
--softmax``): each stream's pooled vector becomes a distribution with
``pooled_log_probabilities``, and the fused distribution is their weighted mean, well defined
whether a stream pooled logits or probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datp.data.splits import VideoItem
from datp.data.video import open_video, presentation_times
from datp.engine.inference import forward_batch
from datp.engine.streams import Stream, check_streams
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
    validate_fusion_weights,
)

log = logging.getLogger(__name__)


# --- reading a video as the test split does -------------------------------------------------------


def read_segments(
    path: str | Path,
    stream: Stream,
    *,
    flow_backend: Any = None,
    flow_short_side: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The test sample of one video file for ``stream``: the dataset's item (``inputs`` float32
    ``[V, N, D_in, S, S]``, ``times [N]``, ``frame_indices [N]``) plus ``raw``, the uint8
    ``[N, D_in, H, W]`` before the transform, ``num_units``, the frames (RGB) or flow fields
    the segments were sampled from, and the video's ``num_frames``, ``fps`` (None if unknown) and
    ``frame_times`` (float64 ``[num_frames]`` presentation times in seconds, or None when the
    source does not give them). The file is opened once."""
    from datp.data.dataset import VideoDataset

    path = Path(path)
    opened: list[Any] = []

    def open_source(item: VideoItem) -> Any:
        if stream.modality == "rgb":
            source = open_video(path, decoder=stream.decoder)
        else:
            if flow_backend is None:
                raise ValueError("a flow stream needs a flow backend (datp.flow.build_backend)")
            source = ComputedFlow(
                path, backend=flow_backend, short_side=flow_short_side, progress=progress,
                decoder=stream.decoder,
            )
        opened.append(source)
        return source

    dataset = VideoDataset(
        items=[VideoItem(path=path.name, label=-1, origin=str(path))],
        classes=stream.classes,
        open_source=open_source,
        modality=stream.modality,
        num_segments=stream.segments,
        flow_length=stream.flow_length,
        train=False,
        transform=None,  # applied below, so the raw frames are kept for the figure
    )
    try:
        sample = dataset[0]
    finally:
        for source in opened:
            source.close()
    raw = sample["inputs"]  # uint8 [N, D_in, H, W]
    sample["inputs"] = stream.transform(raw)  # [V, N, D_in, S, S]
    sample["raw"] = raw
    source = opened[0]
    sample["num_units"] = source.num_frames
    sample["num_frames"] = getattr(source, "video_frames", source.num_frames)
    sample["declared_frames"] = getattr(source, "declared_frames", None)
    sample["fps"] = source.fps
    sample["frame_times"] = getattr(source, "frame_times", None)
    return sample


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
    """uint8 ``[N, H, W, 3]``: the frame the first stream sampled in each segment (its first
    frame for a flow stream)."""
    warnings: list[str] = field(default_factory=list)
    """What the prediction should be read with: a truncated file, a video too short for N."""

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
) -> Prediction:
    """Predict the class of the video at ``path`` with one stream or an RGB and a flow stream.

    ``fusion_weights`` default to :data:`FUSION_WEIGHTS` by modality. The flow of a flow stream is
    computed with ``flow_backend`` (``datp.flow.build_backend``) for the sampled stacks only;
    ``progress(done, total)`` is called as flow fields are computed. Bad input raises
    ``DataError`` naming the file.
    """
    if any(s.features is not None for s in streams):  # a head on features: its own module
        from datp.engine.predict_features import predict_features
        return predict_features(path, streams, top_k=top_k, fraction=fraction,
                                keep_frames=keep_frames)
    path = Path(path)
    weights = _checked_request(path, streams, top_k=top_k, fusion_weights=fusion_weights,
                               fraction=fraction)
    classes = streams[0].classes
    results: list[StreamPrediction] = []
    warnings: list[str] = []
    first_raw: Tensor | None = None
    frame_times: np.ndarray | None = None
    for stream, weight in zip(streams, weights, strict=True):
        sample = read_segments(path, stream, flow_backend=flow_backend,
                               flow_short_side=flow_short_side, progress=progress)
        if frame_times is None:
            frame_times = _frame_times(path, sample)
        warnings += [w for w in _sample_warnings(path, sample, stream) if w not in warnings]
        results.append(_stream_prediction(stream, sample, weight=weight, fraction=fraction,
                                          frame_times=frame_times))
        if first_raw is None and stream.modality == "rgb":
            first_raw = sample["raw"]
    fused = fuse_probabilities([r.probabilities for r in results], weights)  # [C]
    values, indices = fused.topk(min(top_k, len(classes)))
    top = [ClassScore(index=int(i), name=classes[int(i)], probability=float(v))
           for v, i in zip(values, indices, strict=True)]
    return Prediction(
        video=str(path), num_frames=sample["num_frames"], fps=sample["fps"],
        frame_times=frame_times, classes=list(classes), probabilities=fused, top=top,
        streams=results, warnings=warnings,
        frames=_shown_frames(path, streams, results, first_raw) if keep_frames else None,
    )


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
    return weights


def _frame_times(path: Path, sample: dict[str, Any]) -> np.ndarray | None:
    """Each frame's presentation time in seconds, or None where they are not the frames
    counted here (the seconds then come from the frame rate)."""
    frame_times = sample["frame_times"]
    if frame_times is None:  # a source without time stamps (flow computed here)
        frame_times = presentation_times(path)
    if frame_times is not None and len(frame_times) != sample["num_frames"]:
        frame_times = None
    return frame_times


def _stream_prediction(
    stream: Stream, sample: dict[str, Any], *, weight: float, fraction: float,
    frame_times: np.ndarray | None,
) -> StreamPrediction:
    """One stream's forward pass over the segments of ``sample``, with its weight peaks."""
    device = next(stream.model.parameters()).device
    batch = {"inputs": sample["inputs"][None], "times": sample["times"][None]}  # [1, V, ...]
    out = forward_batch(stream.model, batch, device)
    flow = stream.modality == "flow"
    frame_ranges = segment_frame_ranges(
        sample["num_units"], stream.segments, length=stream.flow_length, flow=flow
    )
    return StreamPrediction(
        modality=stream.modality,
        checkpoint=str(stream.checkpoint),
        fusion_weight=float(weight),
        crops=sample["inputs"].shape[0],
        probabilities=out.log_probs[0].exp().cpu(),
        weights=out.weights[0].cpu(),
        segment_scores=None if out.segment_scores is None else out.segment_scores[0].cpu(),
        times=sample["times"].float(),
        # times are (start + L / 2) / units; flow field j lies between frames j and j + 1
        centres=sample["times"].double() * sample["num_units"] + (0.5 if flow else 0.0),
        frame_indices=sample["frame_indices"],
        frame_ranges=frame_ranges,
        peaks=peak_ranges(out.weights[0], frame_ranges, fps=sample["fps"], fraction=fraction,
                          frame_times=frame_times),
    )


def _shown_frames(
    path: Path, streams: Sequence[Stream], results: list[StreamPrediction],
    first_raw: Tensor | None,
) -> np.ndarray:
    """The frames the figure shows, [N, H, W, 3]: the RGB stream's segments, or for flow only
    the first frame of each stack."""
    if first_raw is not None:
        return first_raw.permute(0, 2, 3, 1).numpy()
    with open_video(path, decoder=streams[0].decoder) as reader:
        return reader.read(results[0].frame_indices.numpy())


def _sample_warnings(path: Path, sample: dict[str, Any], stream: Stream) -> list[str]:
    """A file shorter than its container says (truncated), or too short for N segments."""
    found = []
    declared, frames = sample["declared_frames"], sample["num_frames"]
    if declared and declared > frames:
        found.append(f"{path}: truncated: the container declares {declared} frames, only "
                     f"{frames} are there")
    short = short_video_warning(str(path), sample["num_units"], segments=stream.segments,
                                length=stream.flow_length, flow=stream.modality == "flow")
    if short is not None:
        found.append(short)
    return found
