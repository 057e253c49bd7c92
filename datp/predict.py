"""Prediction with trained checkpoints on one video file, and the weak localization DATP gives.

Dimension key: N segments, C classes, V views (test crops), D_in input channels (3 RGB, 2L flow),
L flow-stack length, T frames, H, W image size, S network input side.

    video file -> N segments sampled as the test split samples them (datp.data.dataset)
               -> flow computed for the sampled stacks only, when a flow stream is given
               -> each stream's TSN -> probabilities [C], temporal weights [N]
               -> late fusion (RGB 1 : flow 1.5) -> top-k classes
               -> peak ranges: runs of segments whose weight is at least ``fraction`` of the
                  largest, in frames and seconds (the paper's Fig. 3, on one video)

Each stream is rebuilt from the configuration saved in its checkpoint, and the video goes through
the same ``VideoDataset`` and ``EvalTransform`` that ``datp evaluate`` uses, so a prediction on a
file equals the evaluation of that file. Streams are fused as probabilities (``datp fuse
--softmax``): each stream's pooled vector becomes a distribution with
``pooled_log_probabilities``, and the fused distribution is their weighted mean, well defined
whether a stream pooled logits or probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datp.config import Config
from datp.data.errors import DataError
from datp.data.frames import quantize_flow
from datp.data.sampling import stack_indices
from datp.data.splits import VideoItem
from datp.data.transforms import EvalTransform
from datp.data.video import open_video
from datp.evaluate import FUSION_WEIGHTS
from datp.inference import forward_batch
from datp.localization import (
    PEAK_FRACTION,
    PeakRange,
    check_peak_fraction,
    peak_ranges,
    segment_frame_ranges,
)

log = logging.getLogger(__name__)


Progress = Callable[[int, int], None]
"""``progress(done, total)``: flow fields computed so far out of ``total``."""


# --- loading a stream -----------------------------------------------------------------------------


@dataclass
class Stream:
    """A checkpoint rebuilt for prediction: the model in eval mode and how it reads a video."""

    checkpoint: Path
    model: nn.Module
    config: Config
    classes: list[str]
    flow_extraction: dict | None = None
    """How the stream's training flow was computed (``datp flow``'s settings), when known."""

    @property
    def modality(self) -> str:
        return self.config.data.modality

    @property
    def segments(self) -> int:
        return self.config.data.test_segments

    @property
    def flow_length(self) -> int:
        """L: frames per segment (1 for RGB)."""
        return self.config.data.flow_length if self.modality == "flow" else 1

    def transform(self) -> EvalTransform:
        """The test transform ``datp.build`` gives the test split of this configuration."""
        d = self.config.data
        return EvalTransform(
            size=d.image_size,
            modality=d.modality,
            resize_short=d.resize_short or None,
            crops=d.test_crops,
        )


def load_stream(
    checkpoint: str | Path,
    *,
    segments: int | None = None,
    crops: int | None = None,
    overrides: Sequence[str] = (),
    device: str | torch.device = "cpu",
) -> Stream:
    """Rebuild the model a training checkpoint describes (as ``evaluate_checkpoint`` does).

    ``segments`` and ``crops`` replace the config's ``test_segments`` and ``test_crops``;
    ``overrides`` (``section.key=value``) change the saved config. Raises ``CheckpointError``
    naming the file when it is missing, unsafe, or does not fit its own configuration, and
    ``ValueError`` when its pooling cannot run at ``segments`` (the discrete generator).
    """
    from datp.build import model_from_checkpoint

    path = Path(checkpoint)
    model, config, classes, flow_extraction = model_from_checkpoint(
        path, overrides=overrides, segments=segments, crops=crops
    )
    _check_segments(model, config.data.test_segments, path)
    model.to(device).eval()
    return Stream(
        checkpoint=path, model=model, config=config, classes=list(classes),
        flow_extraction=flow_extraction,
    )


def _check_segments(model: nn.Module, segments: int, path: Path) -> None:
    """Surface the pooling's own refusal of N before any video is decoded."""
    from datp.pooling import DiscreteGenerator

    for module in model.modules():
        if isinstance(module, DiscreteGenerator):
            try:
                module(torch.zeros(1, module.num_segments), torch.zeros(1, segments))
            except ValueError as error:
                raise ValueError(f"checkpoint {path}: {error}") from error


def check_streams(streams: Sequence[Stream], class_names: Sequence[str] | None = None) -> None:
    """Streams must name the same classes in the same order (and those of ``class_names``)."""
    if not streams:
        raise ValueError("prediction needs at least one stream")
    reference = streams[0]
    if len(streams) == 2:
        if reference.modality != "rgb" or streams[1].modality != "flow":
            raise ValueError(
                f"two streams must be an RGB checkpoint and a flow checkpoint; got "
                f"{reference.checkpoint} ({reference.modality}) and {streams[1].checkpoint} "
                f"({streams[1].modality})"
            )
    elif len(streams) > 2:
        raise ValueError(f"at most two streams (RGB and flow), got {len(streams)}")
    for stream in streams[1:]:
        if stream.classes != reference.classes:
            raise ValueError(
                f"{stream.checkpoint} and {reference.checkpoint} name different classes "
                f"({_describe(stream.classes)} vs {_describe(reference.classes)})"
            )
    if class_names is not None and list(class_names) != reference.classes:
        raise ValueError(
            f"the class list ({_describe(class_names)}) does not match the classes "
            f"{reference.checkpoint} was trained on ({_describe(reference.classes)})"
        )


def _describe(classes: Sequence[str]) -> str:
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{len(classes)}: {shown}"


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line: ``Name`` or UCF101's ``classInd.txt`` (``1 Name``)."""
    from datp.data.splits import read_ucf101_classes

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the class list is empty")
    if all(len(line.split()) == 2 and line.split()[0].isdigit() for line in lines):
        return read_ucf101_classes(path)
    return lines


# --- reading a video as the test split does -------------------------------------------------------


class ComputedFlow:
    """A ``FlowSource`` computed from a video file on demand: only the fields the segments read.

    Frames are converted and resized as ``datp flow`` does (340x256, or ``short_side``), and the
    flow is quantized with the same bound, so a flow stream sees what it was trained on.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: Any,
        short_side: int | None = None,
        batch_size: int = 8,
        progress: Progress | None = None,
        decoder: str = "pyav",
    ) -> None:
        self.path = Path(path)
        self.backend = backend
        self.short_side = short_side
        self.batch_size = batch_size
        self.progress = progress
        self._reader = open_video(self.path, decoder=decoder)
        if self._reader.num_frames < 2:
            self._reader.close()
            raise DataError(f"{self.path}: {self._reader.num_frames} frame; flow needs at least 2")
        self.num_frames = self._reader.num_frames - 1  # flow fields

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized flow ``[T, L, 2, H, W]``, stacks past the end repeating the last."""
        from datp.flow.extract import target_size, to_gray_resized

        fields = stack_indices(np.asarray(starts), length=length, num_frames=self.num_frames)
        unique = np.unique(fields)  # [U] field j: from frame j to frame j + 1
        frames = self._reader.read(np.concatenate([unique, unique + 1]))  # [2U, H, W, 3]
        gray = to_gray_resized(frames, target_size(*frames.shape[1:3], self.short_side))
        prev, next_ = gray[: len(unique)], gray[len(unique) :]  # [U, h, w] each
        log.info("%s: computing %d flow fields (%s)", self.path, len(unique), self.backend.name)
        flow = np.empty((len(unique), 2, *prev.shape[1:]), dtype=np.float32)  # [U, 2, h, w]
        if self.progress is not None:
            self.progress(0, len(unique))
        for start in range(0, len(unique), self.batch_size):
            stop = min(start + self.batch_size, len(unique))
            flow[start:stop] = self.backend.compute(prev[start:stop], next_[start:stop])
            if self.progress is not None:
                self.progress(stop, len(unique))
        quantized = quantize_flow(flow)  # [U, 2, h, w]
        return quantized[np.searchsorted(unique, fields)]  # [T, L, 2, h, w]

    def close(self) -> None:
        self._reader.close()


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
    ``[N, D_in, H, W]`` before the transform, and ``num_units``, the frames (RGB) or flow fields
    the segments were sampled from."""
    from datp.data.dataset import VideoDataset

    path = Path(path)
    opened: list[Any] = []

    def open_source(item: VideoItem) -> Any:
        if stream.modality == "rgb":
            source = open_video(path, decoder=stream.config.data.decoder)
        else:
            if flow_backend is None:
                raise ValueError("a flow stream needs a flow backend (datp.flow.build_backend)")
            source = ComputedFlow(
                path, backend=flow_backend, short_side=flow_short_side, progress=progress,
                decoder=stream.config.data.decoder,
            )
        opened.append(source)
        return source

    dataset = VideoDataset(
        items=[VideoItem(path=path.name, label=-1, origin=str(path))],
        classes=stream.classes,
        open_source=open_source,
        modality=stream.modality,
        num_segments=stream.segments,
        flow_length=stream.config.data.flow_length,
        train=False,
        transform=None,  # applied below, so the raw frames are kept for the figure
    )
    sample = dataset[0]
    raw = sample["inputs"]  # uint8 [N, D_in, H, W]
    sample["inputs"] = stream.transform()(raw)  # [V, N, D_in, S, S]
    sample["raw"] = raw
    sample["num_units"] = opened[0].num_frames
    return sample


# --- prediction -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScore:
    index: int
    name: str
    probability: float


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
    frames: np.ndarray | None = field(default=None, repr=False)
    """uint8 ``[N, H, W, 3]``: the frame the first stream sampled in each segment (its first
    frame for a flow stream)."""

    @property
    def duration_s(self) -> float | None:
        return self.num_frames / self.fps if self.fps else None

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
                "centres_s": None if not self.fps else (s.centres / self.fps).tolist(),
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
        }


def video_info(path: str | Path, *, decoder: str = "pyav") -> tuple[int, float | None]:
    """(frame count, frames per second or None) of a video file; DataError when unreadable."""
    with open_video(path, decoder=decoder) as reader:
        return reader.num_frames, reader.fps


def check_fusion_weights(weights: Sequence[float], num_streams: int) -> list[float]:
    """One non-negative weight per stream, with a positive sum (checked before any decoding)."""
    weights = [float(w) for w in weights]
    if len(weights) != num_streams:
        raise ValueError(f"{num_streams} streams but {len(weights)} fusion weights")
    if any(not w >= 0 for w in weights) or not sum(weights) > 0:
        raise ValueError(
            f"fusion weights must be >= 0 with a positive sum, got {weights}"
        )
    return weights


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
    path = Path(path)
    check_streams(streams)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    weights = check_fusion_weights(
        fusion_weights or [FUSION_WEIGHTS[s.modality] for s in streams], len(streams)
    )
    check_peak_fraction(fraction)
    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, not a video")
    num_frames, fps = video_info(path, decoder=streams[0].config.data.decoder)
    classes = streams[0].classes
    results: list[StreamPrediction] = []
    first_raw: Tensor | None = None
    for stream, weight in zip(streams, weights, strict=True):
        sample = read_segments(
            path,
            stream,
            flow_backend=flow_backend,
            flow_short_side=flow_short_side,
            progress=progress,
        )
        device = next(stream.model.parameters()).device
        batch = {"inputs": sample["inputs"][None], "times": sample["times"][None]}  # [1, V, ...]
        out = forward_batch(stream.model, batch, device)
        flow = stream.modality == "flow"
        frame_ranges = segment_frame_ranges(
            sample["num_units"], stream.segments, length=stream.flow_length, flow=flow
        )
        results.append(
            StreamPrediction(
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
                peaks=peak_ranges(out.weights[0], frame_ranges, fps=fps, fraction=fraction),
            )
        )
        if first_raw is None and stream.modality == "rgb":
            first_raw = sample["raw"]
    total = sum(weights)
    fused = sum(w * r.probabilities for w, r in zip(weights, results, strict=True)) / total  # [C]
    values, indices = fused.topk(min(top_k, len(classes)))
    top = [
        ClassScore(index=int(i), name=classes[int(i)], probability=float(v))
        for v, i in zip(values, indices, strict=True)
    ]
    frames = None
    if keep_frames:
        if first_raw is not None:
            frames = first_raw.permute(0, 2, 3, 1).numpy()  # [N, H, W, 3]
        else:  # flow only: show the first frame of each stack
            with open_video(path, decoder=streams[0].config.data.decoder) as reader:
                frames = reader.read(results[0].frame_indices.numpy())
    return Prediction(
        video=str(path),
        num_frames=num_frames,
        fps=fps,
        classes=list(classes),
        probabilities=fused,
        top=top,
        streams=results,
        frames=frames,
    )


# --- the figure -----------------------------------------------------------------------------------


def plot_prediction(prediction: Prediction, path: str | Path, *, strip_height: int = 96) -> None:
    """A strip of the sampled frames, then per stream the per-segment probability of the
    predicted class beside the temporal weights (peak 1), with the peak ranges shaded (the
    paper's Fig. 3 for one video, in the style of ``datp.visualize``)."""
    from datp.data import functional as F
    from datp.visualize import _pyplot

    plt = _pyplot()
    best = prediction.top[0]
    rows = 1 + len(prediction.streams)
    fig, axes = plt.subplots(
        rows, 1, figsize=(8, 1.6 + 2.6 * len(prediction.streams)), squeeze=False,
        gridspec_kw={"height_ratios": [1.2] + [2] * len(prediction.streams)},
    )
    strip_ax = axes[0, 0]
    if prediction.frames is not None:
        frames = torch.from_numpy(np.ascontiguousarray(prediction.frames)).permute(0, 3, 1, 2)
        frames = F.resize_short(frames, min(strip_height, *frames.shape[-2:]))  # [N, 3, h, w]
        strip = frames.permute(2, 0, 3, 1).flatten(1, 2)  # [h, N*w, 3]
        strip_ax.imshow(strip.numpy())
    strip_ax.axis("off")
    strip_ax.set_title(
        f"{Path(prediction.video).name}: {best.name} ({100 * best.probability:.1f} %)", fontsize=9
    )
    duration = prediction.duration_s
    for ax, stream in zip(axes[1:, 0], prediction.streams, strict=True):
        scale = duration if duration else 1.0
        times = (stream.centres * scale / prediction.num_frames).numpy()  # [N]
        if stream.segment_scores is not None:
            scores = stream.segment_scores.float().softmax(-1)[:, best.index]  # [N]
            ax.plot(times, scores.numpy(), "o--", color="tab:blue", label=f"p({best.name})")
        weights = stream.weights.double()
        ax.bar(
            times,
            (weights / weights.abs().max().clamp_min(1e-12)).numpy(),
            width=0.6 * scale / len(times),
            color="tab:orange",
            alpha=0.6,
            label="weights (peak 1)",
        )
        for i, peak in enumerate(stream.peaks):
            if duration:
                span = (peak.start_s, peak.end_s)
            else:
                span = (peak.start_frame / prediction.num_frames,
                        peak.end_frame / prediction.num_frames)
            ax.axvspan(*span, color="tab:green", alpha=0.15, label="peak" if i == 0 else None)
        ax.set_xlim(0, scale)
        ax.set_ylim(min(0.0, float(weights.min() / weights.abs().max().clamp_min(1e-12))), 1.05)
        ax.set_xlabel("seconds" if duration else "normalized time")
        ax.set_title(f"{stream.modality} stream", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
