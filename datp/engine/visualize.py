"""Figures: the confusion matrix, the paper's Fig. 3 (segment scores beside temporal weights) and
Fig. 4 (per-class accuracy change), and accuracy against the key-action fraction.

Dimension key: N segments, C classes. matplotlib is imported lazily (extra ``viz``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datp.data import functional as F
from datp.errors import MissingDependency

STRIP_FRAMES = 8
"""The most frames a prediction keeps for its figure, at segments spread over the video."""
STRIP_SIDE = 128
"""Frames kept for the figure are shrunk to this short side when larger."""


def strip_frame(frame: np.ndarray) -> np.ndarray:
    """A copy of ``frame [H, W, 3]``, its short side shrunk to :data:`STRIP_SIDE` if larger."""
    if min(frame.shape[:2]) <= STRIP_SIDE:
        return frame.copy()
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
    return F.resize_short(image, STRIP_SIDE)[0].permute(1, 2, 0).numpy()


def strip_segments(num_segments: int) -> np.ndarray:
    """int64 ``[M]``: the segments whose frames a figure shows (all up to :data:`STRIP_FRAMES`,
    else that many spread evenly)."""
    if num_segments <= STRIP_FRAMES:
        return np.arange(num_segments)
    return np.unique(np.linspace(0, num_segments - 1, STRIP_FRAMES).round().astype(np.int64))


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise MissingDependency("figures need matplotlib: pip install 'datp[viz]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: Tensor, classes: Sequence[str], path: Path) -> None:
    """Row-normalized confusion matrix ``[C, C]`` (rows: true class)."""
    plt = _pyplot()
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.3 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 60:
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_weights_beside_scores(
    examples: Sequence[dict], path: Path, *, title: str = "", key_windows: bool = True
) -> None:
    """The paper's Fig. 3: for each video, the per-segment softmax score of the true class and
    the temporal weights the pooling generated.

    Each example: ``times [N]``, ``true_class_score [N]``, ``weights [N]``, ``name`` and
    optionally ``key`` = (start, end) normalized time of the ground-truth key action.
    """
    plt = _pyplot()
    cols = min(3, len(examples))
    rows = -(-len(examples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, example in zip(axes.flat, examples, strict=False):
        times = torch.as_tensor(example["times"]).numpy()
        ax.plot(
            times,
            torch.as_tensor(example["true_class_score"]).numpy(),
            "o--",
            color="tab:blue",
            label="true-class score",
        )
        weights = torch.as_tensor(example["weights"]).double()
        ax.bar(
            times,
            (weights / weights.abs().max().clamp_min(1e-12)).numpy(),
            width=0.6 / len(times),
            color="tab:orange",
            alpha=0.6,
            label="weights (peak 1)",
        )
        if key_windows and example.get("key") is not None:
            ax.axvspan(*example["key"], color="tab:green", alpha=0.15, label="key action")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_title(example.get("name", ""), fontsize=8)
        ax.set_xlabel("normalized time")
    for ax in list(axes.flat)[len(examples) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_class_changes(
    baseline: Tensor,
    improved: Tensor,
    classes: Sequence[str],
    path: Path,
    *,
    top: int = 5,
    labels: tuple[str, str] = ("average pooling", "DATP"),
) -> list[tuple[str, float]]:
    """The paper's Fig. 4: the ``top`` largest and smallest per-class accuracy changes.

    Returns the plotted (class, change) pairs, largest first.
    """
    plt = _pyplot()
    change = (improved - baseline).double()
    valid = ~change.isnan()
    order = torch.argsort(change.masked_fill(~valid, float("-inf")), descending=True)
    order = order[: int(valid.sum())]
    picked = torch.cat([order[:top], order[-top:]]) if len(order) > 2 * top else order
    pairs = [(classes[i], change[i].item()) for i in picked.tolist()]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(pairs) + 1.2))
    names = [name for name, _ in pairs][::-1]
    values = [100 * value for _, value in pairs][::-1]
    ax.barh(names, values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"accuracy change, {labels[1]} - {labels[0]} (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return pairs


def plot_curves(
    x: Sequence[float],
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
) -> None:
    """Lines with error bars: ``curves[name] = (means, stds)`` over ``x``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (means, stds) in curves.items():
        ax.errorbar(
            x,
            [100 * m for m in means],
            yerr=[100 * s for s in stds],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _frame_strip(ax: Any, frames: np.ndarray | None, *, strip_height: int, title: str) -> None:
    """The sampled frames ``[N, H, W, 3]`` side by side, ``strip_height`` pixels high."""
    if frames is not None:
        images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        images = F.resize_short(images, min(strip_height, *images.shape[-2:]))  # [N, 3, h, w]
        strip = images.permute(2, 0, 3, 1).flatten(1, 2)  # [h, N*w, 3]
        ax.imshow(strip.numpy())
    ax.axis("off")
    ax.set_title(title, fontsize=9)


DETECTIONS_SHOWN = 10
"""The most detections a prediction's figure draws (the best ones)."""


def _detections_panel(ax: Any, detections: Sequence[dict[str, Any]], *, duration: float
                      ) -> None:
    """The best :data:`DETECTIONS_SHOWN` detections (as ActivityNet's result files list them:
    ``label``, ``score``, ``segment`` in seconds) as bars over the video's seconds, a row per
    class, darker for a higher score."""
    shown = list(detections)[:DETECTIONS_SHOWN]
    labels = list(dict.fromkeys(d["label"] for d in shown))
    scores = [d["score"] for d in shown]
    top, low = max(scores), min(scores)
    for d, score in zip(shown, scores, strict=True):
        strength = 1.0 if top - low < 1e-12 else (score - low) / (top - low)
        row = labels.index(d["label"])
        start, end = d["segment"]
        ax.broken_barh([(start, end - start)], (row - 0.35, 0.7), color="tab:red",
                       alpha=0.25 + 0.65 * strength)
        ax.text(start, row, f"{score:.2f}", fontsize=6, va="center")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlim(0, duration)
    ax.set_xlabel("seconds")
    ax.set_title(f"detections (the best {len(shown)} of {len(detections)})", fontsize=8)


def _stream_panel(ax: Any, stream: dict[str, Any], best: dict[str, Any], *,
                  duration: float | None, num_frames: int) -> None:
    """One stream's per-segment probability of ``best`` beside its temporal weights (peak 1),
    its peak ranges shaded; in seconds when the ``duration`` is known."""
    scale = duration if duration else 1.0
    if duration and stream.get("centres_s") is not None:  # the frames' own times
        times = np.asarray(stream["centres_s"])  # [N]
    else:
        times = np.asarray(stream["centres"]) * scale / num_frames  # [N]
    if stream["segment_scores"] is not None:
        scores = torch.tensor(stream["segment_scores"]).softmax(-1)[:, best["index"]]  # [N]
        ax.plot(times, scores.numpy(), "o--", color="tab:blue", label=f"p({best['name']})")
    weights = torch.tensor(stream["weights"], dtype=torch.float64)
    peak = weights.abs().max().clamp_min(1e-12)
    ax.bar(times, (weights / peak).numpy(), width=0.6 * scale / len(times), color="tab:orange",
           alpha=0.6, label="weights (peak 1)")
    for i, run in enumerate(stream["peaks"]):
        if duration:
            span = (run["start_s"], run["end_s"])
        else:
            span = (run["start_frame"] / num_frames, run["end_frame"] / num_frames)
        ax.axvspan(*span, color="tab:green", alpha=0.15, label="peak" if i == 0 else None)
    ax.set_xlim(0, scale)
    ax.set_ylim(min(0.0, float(weights.min() / peak)), 1.05)
    ax.set_xlabel("seconds" if duration else "normalized time")
    ax.set_title(f"{stream['modality']} stream", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")


def plot_prediction(
    record: dict[str, Any], frames: np.ndarray | None, path: str | Path, *,
    strip_height: int = 96,
) -> None:
    """A strip of the sampled frames, the detections when the record has some (a bar per
    detection, in seconds), then per stream the per-segment probability of the predicted class
    beside the temporal weights (peak 1), with the peak ranges shaded (the paper's Fig. 3 for
    one video, in the style of ``datp.engine.visualize``).

    ``record`` is a prediction as plain data, what ``datp predict`` writes to its JSON file
    (``datp.engine.predict.Prediction.to_dict``); ``frames`` uint8 ``[M, H, W, 3]`` or None.
    """
    plt = _pyplot()
    best = record["top"][0]
    streams = record["streams"]
    detections = record.get("detections") or []
    shown = bool(detections) and bool(record["duration_s"])
    ratios = [1.2] + [1.0] * shown + [2] * len(streams)
    fig, axes = plt.subplots(
        len(ratios), 1, figsize=(8, 1.6 + 1.2 * shown + 2.6 * len(streams)), squeeze=False,
        gridspec_kw={"height_ratios": ratios},
    )
    _frame_strip(axes[0, 0], frames, strip_height=strip_height,
                 title=f"{Path(record['video']).name}: {best['name']} "
                       f"({100 * best['probability']:.1f} %)")
    if shown:
        _detections_panel(axes[1, 0], detections, duration=record["duration_s"])
    for ax, stream in zip(axes[1 + shown:, 0], streams, strict=True):
        _stream_panel(ax, stream, best, duration=record["duration_s"],
                      num_frames=record["num_frames"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
