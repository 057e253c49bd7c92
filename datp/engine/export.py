"""Export a trained segment network (backbone + temporal pooling) to ONNX or TorchScript, checked
against PyTorch.

Dimension key: B videos (dynamic), N segments (fixed at export), D_in input channels (3 RGB, 2L
flow), S input side, D feature channels, C classes.

The exported graph takes

    inputs  float32 [B, N, D_in, S, S]  normalized as the test transform does: RGB
            (x / 255 - mean) / std with ImageNet's mean and std; flow x / 128 - 1 for TSN-quantized
            fields (x1, y1, x2, y2, ... interleaved)
            or, for a head on features, float32 [B, N, D]: the features of the N sampled steps
    times   float32 [B, N]              normalized time in [0, 1] of each segment

and returns ``probabilities [B, C]`` (the video's class distribution), ``scores [B, C]`` (the
pooled vector), ``weights [B, N]`` (the temporal weights) and ``segment_scores [B, N, C]``
(per-segment logits). A JSON sidecar beside the file records this layout, the class names, N and
the check. ONNX uses the TorchScript-based exporter (``dynamo=False``, no extra package) and is
checked with onnxruntime, an optional extra (``datp[export]``) imported only here.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from datp.data.frames import FLOW_BOUND
from datp.data.functional import IMAGENET_MEAN, IMAGENET_STD
from datp.engine.streams import Stream
from datp.errors import InputError, MissingDependency
from datp.io import atomic_write_json

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OUTPUT_NAMES = ("probabilities", "scores", "weights", "segment_scores")
TOLERANCE = 1e-4
"""An export passes when every output satisfies ``|export - torch| <= tol * (1 + |torch|)``."""


class ExportError(ValueError):
    """An export whose outputs do not match PyTorch's within the tolerance."""


class CannotExport(ExportError):
    """The exporter itself failed on this model (an operation its format cannot express)."""


class ExportedTSN(nn.Module):
    """The segment network plus the step from its pooled vector to probabilities."""

    def __init__(self, *, model: nn.Module, pool: str) -> None:
        super().__init__()
        self.model = model
        self.pool = pool

    def forward(self, inputs: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """inputs ``[B, N, D_in, S, S]``, times ``[B, N]`` -> probabilities ``[B, C]``, scores
        ``[B, C]``, weights ``[B, N]``, segment_scores ``[B, N, C]``."""
        out = self.model(inputs, times)
        probabilities = out.log_probs.exp()
        return probabilities, out.scores, out.weights, out.segment_scores


@dataclass(frozen=True)
class ExportReport:
    path: Path
    sidecar: Path
    format: str
    max_abs_diff: float
    """Largest ``|export - torch|`` over every output, at ``check_batch`` videos."""
    tolerance: float
    check_batch: int


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependency(
            "checking an ONNX export needs onnxruntime: pip install 'datp[export]'"
        ) from error
    return onnxruntime


def example_inputs(
    batch: int, segments: int, shape: Sequence[int], *, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random normalized-looking inputs ``[B, N, *shape]`` (``[B, N, D_in, S, S]``, or ``[B, N,
    D]`` for features) and sorted times ``[B, N]``."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, segments, *shape, generator=g)
    times = torch.rand(batch, segments, generator=g).sort(dim=1).values
    return inputs, times


def export_model(
    model: nn.Module, path: Path, *, format: str, example: tuple[Tensor, Tensor], opset: int = 17
) -> None:
    """Write ``model`` (an :class:`ExportedTSN` in eval mode) to ``path`` with a dynamic batch."""
    if format not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {format!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns about every shape check it turns into a constant; the check against
    # PyTorch at another batch size is what tells whether the export generalizes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            _export(model, path, format=format, example=example, opset=opset)
        except Exception as error:  # the exporters raise their own types
            other = "torchscript" if format == "onnx" else "onnx"
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CannotExport(
                f"{path}: torch cannot export this model to {format} ({type(error).__name__}: "
                f"{first}); try --format {other}; if neither works, please report it as a datp bug"
            ) from error


def _export(
    model: nn.Module, path: Path, *, format: str, example: tuple[Tensor, Tensor], opset: int
) -> None:
    if format == "onnx":
        batch_axis = {0: "B"}
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["inputs", "times"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: batch_axis for name in ("inputs", "times", *OUTPUT_NAMES)},
        )
    else:
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))


def run_export(path: Path, format: str, inputs: Tensor, times: Tensor) -> list[Tensor]:
    """Run the exported file (onnxruntime, or the TorchScript file loaded back); ExportError
    when it fails to run at this batch size."""
    try:
        if format == "onnx":
            ort = _onnxruntime()
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            given = {"inputs": inputs.numpy(), "times": times.numpy()}
            outputs = session.run(None, {i.name: given[i.name] for i in session.get_inputs()})
            return [torch.from_numpy(o) for o in outputs]
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return list(loaded(inputs, times))
    except ImportError:
        raise
    except Exception as error:  # onnxruntime and TorchScript raise their own types
        raise ExportError(
            f"{path} fails to run on {inputs.shape[0]} videos ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from error


def graph_inputs(path: Path, format: str) -> list[str]:
    """The inputs the exported file takes: TorchScript keeps both arguments; ONNX drops one
    the model never reads (``times`` under average or max pooling, which ignore time)."""
    if format != "onnx":
        return ["inputs", "times"]
    session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def compare(exported: Sequence[Tensor], expected: Sequence[Tensor], tolerance: float) -> float:
    """Max ``|exported - expected|``; ExportError when shapes differ or the tolerance fails."""
    worst = 0.0
    for name, a, b in zip(OUTPUT_NAMES, exported, expected, strict=True):
        if tuple(a.shape) != tuple(b.shape):
            raise ExportError(
                f"output {name}: the export gives {tuple(a.shape)}, torch {tuple(b.shape)}"
            )
        difference = (a.double() - b.double()).abs()
        worst = max(worst, float(difference.max()))
        if not bool((difference <= tolerance * (1 + b.double().abs())).all()):
            raise ExportError(
                f"output {name} differs from PyTorch by up to {float(difference.max()):.3g} "
                f"(tolerance {tolerance:g} x (1 + |value|))"
            )
    return worst


def export_stream(
    stream: Stream,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    tolerance: float = TOLERANCE,
    check_batch: int = 3,
    opset: int = 17,
) -> ExportReport:
    """Export the model of a stream rebuilt from its checkpoint (``datp.engine.build.
    load_stream``) and check it against PyTorch on random input with a batch size other than the
    one exported with. ``out`` defaults to the checkpoint's path with ``.onnx`` or
    ``.torchscript.pt``; the sidecar is ``<out>.json``. The file is kept when the check fails
    (ExportError), so it can be inspected."""
    if format not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {format!r}")
    if check_batch < 1:
        raise InputError(f"check_batch must be >= 1, got {check_batch}")
    if format == "onnx":
        _onnxruntime()  # fail before the slow export when the extra is missing
    checkpoint = stream.checkpoint
    pool = stream.model.pooling.pool
    model = ExportedTSN(model=stream.model, pool=pool).eval()
    path = Path(out) if out else checkpoint.with_name(checkpoint.stem + SUFFIXES[format])
    _claim(path, checkpoint)
    export_batch = 2 if check_batch != 2 else 3  # the check runs at another batch size
    example = example_inputs(export_batch, stream.segments, stream.segment_shape)
    with torch.no_grad():
        export_model(model, path, format=format, example=example, opset=opset)
        check = example_inputs(check_batch, stream.segments, stream.segment_shape, seed=1)
        expected = list(model(*check))
    log.info("exported %s to %s; checking on %d videos", checkpoint, path, check_batch)
    max_abs_diff = compare(run_export(path, format, *check), expected, tolerance)
    sidecar = Path(str(path) + ".json")
    description = describe(stream, format=format, pool=pool, path=path)
    taken = graph_inputs(path, format)
    description["inputs"] = {k: v for k, v in description["inputs"].items() if k in taken}
    description["check"] = {
        "batch": check_batch,
        "max_abs_diff": max_abs_diff,
        "tolerance": f"|export - torch| <= {tolerance:g} * (1 + |torch|)",
        "runtime": "onnxruntime" if format == "onnx" else "torch.jit.load",
    }
    atomic_write_json(sidecar, description)
    return ExportReport(
        path=path,
        sidecar=sidecar,
        format=format,
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        check_batch=check_batch,
    )


def _claim(path: Path, checkpoint: Path) -> None:
    """Refuse, in one line, replacing an export of another checkpoint (its sidecar says which);
    an export of the same checkpoint is redone."""
    if not path.exists():
        return
    try:
        earlier = json.loads(Path(str(path) + ".json").read_text()).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier == str(checkpoint):
        return
    made = f"from {earlier}" if earlier else "that no sidecar describes"
    raise InputError(f"{path} exists, an export {made}; choose another --out, or move it away")


def describe(stream: Stream, *, format: str, pool: str, path: Path) -> dict[str, Any]:
    """The sidecar: input layout, preprocessing, outputs, classes and N."""
    inputs = _frame_inputs(stream) if stream.features is None else _feature_inputs(stream)
    return {**_sidecar(stream, format=format, pool=pool, path=path), "inputs": inputs}


def _sidecar(stream: Stream, *, format: str, pool: str, path: Path) -> dict[str, Any]:
    return {
        "file": path.name,
        "format": format,
        "checkpoint": str(stream.checkpoint),
        "modality": stream.modality,
        "num_segments": stream.segments,
        "flow_length": stream.flow_length if stream.modality == "flow" else None,
        "classes": stream.classes,
        "pool": pool,
        "inputs": None,
        "outputs": {
            "probabilities": "[B, C] class distribution of each video",
            "scores": f"[B, C] pooled vector (pooled {pool})",
            "weights": "[B, N] temporal weights",
            "segment_scores": "[B, N, C] per-segment logits",
        },
        "dynamic_axes": {"B": "batch of videos"},
    }


def _feature_inputs(stream: Stream) -> dict[str, Any]:
    (channels,) = stream.segment_shape
    return {
        "inputs": {
            "shape": ["B", stream.segments, channels],
            "dtype": "float32",
            "layout": "[B, N, D]: the feature vector of each segment's step, as stored",
            "features": stream.features.record,
            "preprocessing": "the T steps of a video's features split into N equal parts, the "
                             "centre step of each (datp.data.feature_dataset)",
        },
        "times": {
            "shape": ["B", stream.segments],
            "dtype": "float32",
            "layout": "[B, N]: the step's time in seconds / the video's duration, in [0, 1]",
        },
    }


def _frame_inputs(stream: Stream) -> dict[str, Any]:
    d = stream
    channels = stream.segment_shape[0]
    if d.modality == "rgb":
        normalization = {
            "formula": "(x / 255 - mean) / std per channel, x uint8 RGB",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
        layout = "3 channels R, G, B"
    else:
        bound = (stream.flow_extraction or {}).get("bound", FLOW_BOUND)
        normalization = {
            "formula": f"x / 128 - 1, x uint8 flow quantized with bound {bound:g} (128 = no "
                       "motion)",
            "mean": [128.0 / 255.0] * channels,
            "std": [128.0 / 255.0] * channels,
        }
        layout = f"{channels} channels: {channels // 2} flow fields, x1, y1, x2, y2, ..."
    return {
        "inputs": {
            "shape": ["B", stream.segments, channels, d.image_size, d.image_size],
            "dtype": "float32",
            "layout": f"[B, N, D_in, S, S]: {layout}",
            "normalization": normalization,
            "preprocessing": (
                f"N segments sampled at the centre of N equal parts of the video; frames "
                f"resized to a short side of {d.resize_short or d.image_size}, centre crop "
                f"{d.image_size}"
            ),
        },
        "times": {
            "shape": ["B", stream.segments],
            "dtype": "float32",
            "layout": "[B, N]: (start + L / 2) / F for a segment starting at frame (or flow "
            "field) start of F, L = 1 for RGB; in [0, 1]",
        },
    }
