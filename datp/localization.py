"""DATP's weak localization (paper Sec. 4.4, Fig. 3): where in a video the temporal weights
peak, as segments, frames and seconds.

Dimension key: N segments, T frames.

Seconds come from the frames' presentation times when the video gives them
(``VideoReader.frame_times``), so a variable frame rate is right; ``index / fps`` only when it
does not (:func:`frame_seconds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from datp.errors import InputError

PEAK_FRACTION = 0.5
"""A segment belongs to a peak when its weight is at least this share of the largest weight."""


def check_peak_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise InputError(f"the peak fraction must lie in (0, 1], got {fraction}")


@dataclass(frozen=True)
class PeakRange:
    """A run of consecutive segments whose weights reach the peak fraction."""

    first_segment: int
    last_segment: int
    """Inclusive."""
    start_frame: int
    end_frame: int
    """Exclusive: the run covers frames ``start_frame .. end_frame - 1``."""
    start_s: float | None
    end_s: float | None
    """Seconds from the first frame: when frame ``start_frame`` is shown, and when the frame
    after the run would be (None when the video gives neither time stamps nor a frame rate)."""
    peak: float
    """The largest weight in the run relative to the largest of the video (1 for the top run)."""
    share: float
    """The run's share of the sum of the (positive) weights."""


def segment_frame_ranges(
    num_units: int, num_segments: int, *, length: int = 1, flow: bool = False
) -> np.ndarray:
    """int64 ``[N, 2]``: the frames ``[first, end)`` each test segment was sampled from.

    TSN splits the ``num_units - length + 1`` valid starts into N equal parts; a segment's stack
    reads ``length`` units from any start of its part. Units are frames for RGB; for flow unit j
    is the motion from frame j to j + 1, so a stack of L fields spans L + 1 frames.
    """
    if num_units < 1 or num_segments < 1 or length < 1:
        raise ValueError(
            f"expected num_units, num_segments, length >= 1, got {num_units}, {num_segments}, "
            f"{length}"
        )
    span = max(num_units - length + 1, 1)
    edges = np.arange(num_segments + 1) * (span / num_segments)  # [N + 1]
    first = np.floor(edges[:-1]).astype(np.int64)  # [N]
    last_start = np.maximum(np.ceil(edges[1:]).astype(np.int64) - 1, first)  # [N]
    end = last_start + length + (1 if flow else 0)  # exclusive
    total_frames = num_units + (1 if flow else 0)
    return np.stack([first, np.minimum(end, total_frames)], axis=1)


def frame_seconds(
    positions: np.ndarray | Sequence[float],
    *,
    fps: float | None,
    frame_times: np.ndarray | None = None,
) -> np.ndarray | None:
    """Seconds of frame ``positions`` (float, in frames: ``k`` is when frame k is shown,
    ``k + 0.5`` halfway to the next, ``T`` the end of the last frame).

    ``frame_times [T]`` (each frame's presentation time, from the first) are interpolated, so a
    variable frame rate is right; the last frame lasts as long as the one before it. Without
    them ``positions / fps``; None with neither.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if frame_times is not None and len(frame_times) > 0:
        times = np.asarray(frame_times, dtype=np.float64)  # [T]
        last = times[-1] - times[-2] if len(times) > 1 else (1 / fps if fps else 0.0)
        edges = np.append(times, times[-1] + last)  # [T + 1]
        return np.interp(positions, np.arange(len(edges)), edges)
    if fps:
        return positions / fps
    return None


def peak_ranges(
    weights: Tensor | np.ndarray,
    frame_ranges: np.ndarray,
    *,
    fps: float | None,
    fraction: float = PEAK_FRACTION,
    frame_times: np.ndarray | None = None,
) -> list[PeakRange]:
    """Runs of consecutive segments whose weight is at least ``fraction`` of the largest weight,
    largest peak first. ``weights [N]`` (negative weights of the discrete generator count as 0),
    ``frame_ranges [N, 2]`` from :func:`segment_frame_ranges`; seconds from ``frame_times``
    when given (:func:`frame_seconds`). Uniform weights (average pooling) give one run over the
    whole video; all-zero weights give none."""
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1).clamp_min(0).numpy()  # [N]
    frame_ranges = np.asarray(frame_ranges)
    if frame_ranges.shape != (len(w), 2):
        raise ValueError(f"expected frame ranges [{len(w)}, 2], got {frame_ranges.shape}")
    check_peak_fraction(fraction)
    if not np.isfinite(w).all():
        raise ValueError("the temporal weights are not finite")
    top, total = w.max(initial=0.0), w.sum()
    if top <= 0:
        return []
    above = w >= fraction * top
    runs: list[PeakRange] = []
    i = 0
    while i < len(w):
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(w) and above[j + 1]:
            j += 1
        start, end = int(frame_ranges[i:j + 1, 0].min()), int(frame_ranges[i:j + 1, 1].max())
        seconds = frame_seconds([start, end], fps=fps, frame_times=frame_times)
        runs.append(
            PeakRange(
                first_segment=i,
                last_segment=j,
                start_frame=start,
                end_frame=end,
                start_s=None if seconds is None else float(seconds[0]),
                end_s=None if seconds is None else float(seconds[1]),
                peak=float(w[i : j + 1].max() / top),
                share=float(w[i : j + 1].sum() / total),
            )
        )
        i = j + 1
    return sorted(runs, key=lambda run: (-run.peak, -run.share, run.first_segment))


def format_range(peak: PeakRange) -> str:
    """``"1.20-2.40 s (frames 30-59, segments 3-5, 64 % of the weight)"``."""
    where = f"frames {peak.start_frame}-{peak.end_frame - 1}"
    segments = f"segment {peak.first_segment}" if peak.first_segment == peak.last_segment else (
        f"segments {peak.first_segment}-{peak.last_segment}"
    )
    share = f"{100 * peak.share:.0f} % of the weight"
    if peak.start_s is None or peak.end_s is None:
        return f"{where} ({segments}, {share})"
    return f"{peak.start_s:.2f}-{peak.end_s:.2f} s ({where}, {segments}, {share})"
