"""The time grid of a feature sequence: which frames each step reads, and the step's time.

F frames of the video, K units (the frames a step may read: every frame, or one per 1 / fps
seconds), S steps, W units per step. Pure functions of arrays.

A frame is shown from its presentation time until the next frame's (the last one for the
median frame step), so a video of constant rate r gives frame j the span ``[j / r, (j + 1) /
r)``. ``--fps F`` makes K = round(duration * F) units, unit k spanning ``[k / F, (k + 1) / F)``
and reading the frame shown at its middle. A step reads W consecutive units every ``stride``
units (``(K - W) // stride + 1`` steps, the frames after the last whole window unread, as
ActionFormer's windows; a video shorter than one window gives one step, its last unit
repeated). A step's time is the middle of its units' span: for every frame (W = 1) of a
constant-rate video ``(j + 1/2) / r``, the time datp's sampling gives frame j
(:func:`datp.data.sampling.normalized_times` times the duration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datp.errors import InputError


@dataclass(frozen=True)
class TimeGrid:
    """Where the steps of a feature sequence lie."""

    fps: float | None = None
    """One unit per 1 / fps seconds (chosen by presentation time); None: every frame."""
    window: int = 1
    """W: units per step (a video model's clip, an image model's frames averaged, a flow
    stack's fields)."""
    stride: int = 1
    """Units from one step's start to the next one's."""

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"--fps {self.fps}: must be positive")
        if self.window < 1 or self.stride < 1:
            raise InputError(f"--window {self.window} --stride {self.stride}: both must be >= 1")

    def settings(self) -> dict:
        return {"fps": self.fps, "window": self.window, "stride": self.stride}


@dataclass(frozen=True)
class VideoGrid:
    """One video's steps."""

    units: np.ndarray
    """int64 ``[K]``: the source frame (or flow field) each unit reads."""
    windows: np.ndarray
    """int64 ``[S, W]``: the units of each step."""
    times: np.ndarray
    """float64 ``[S]``: seconds of each step's middle, from the first frame."""
    duration: float
    """Seconds from the first frame's start to the last frame's end."""

    @property
    def num_steps(self) -> int:
        return int(self.windows.shape[0])

    def step_frames(self) -> np.ndarray:
        """int64 ``[S, 2]``: the first and last source frame each step reads."""
        return np.stack([self.units[self.windows[:, 0]], self.units[self.windows[:, -1]]], 1)


def frame_spans(
    frame_times: np.ndarray | None, *, num_frames: int, fps: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``([F], [F])``: when each frame starts and ends being shown, in seconds from the
    first frame: from its presentation times where the decoder gives them, else ``j / fps``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frame_times is None or len(frame_times) != num_frames:
        if not fps or fps <= 0:
            raise ValueError("a video without presentation times needs its frame rate")
        frame_times = np.arange(num_frames) / fps
    begin = np.asarray(frame_times, dtype=np.float64) - float(frame_times[0])
    median = float(np.median(np.diff(begin))) if num_frames > 1 else 0.0
    last = median if median > 0 else (1.0 / fps if fps else 1.0)  # the last frame's span
    end = np.append(begin[1:], begin[-1] + last)
    return begin, end


def resample(begin: np.ndarray, end: np.ndarray, fps: float) -> tuple[np.ndarray, ...]:
    """Units at ``fps``: (source frame int64 ``[K]``, unit start ``[K]``, unit end ``[K]``),
    each unit reading the frame shown at the middle of its span."""
    duration = float(end[-1])
    count = max(1, int(round(duration * fps)))
    k = np.arange(count)
    middles = np.minimum((k + 0.5) / fps, np.nextafter(duration, 0.0))
    frames = np.clip(np.searchsorted(begin, middles, side="right") - 1, 0, len(begin) - 1)
    return frames.astype(np.int64), k / fps, np.minimum((k + 1) / fps, duration)


def step_windows(num_units: int, *, window: int, stride: int) -> np.ndarray:
    """int64 ``[S, W]``: windows of ``window`` units every ``stride`` units from unit 0; one
    window repeating the last unit when there are fewer than ``window`` units."""
    if num_units < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    starts = np.arange(0, max(num_units - window, 0) + 1, stride)
    return np.minimum(starts[:, None] + np.arange(window), num_units - 1).astype(np.int64)


def plan_grid(
    grid: TimeGrid, *, num_frames: int, frame_times: np.ndarray | None, fps: float | None
) -> VideoGrid:
    """The steps of a video of ``num_frames`` frames shown at ``frame_times`` (seconds, or None:
    at ``fps``)."""
    begin, end = frame_spans(frame_times, num_frames=num_frames, fps=fps)
    if grid.fps is None:
        units, unit_begin, unit_end = np.arange(num_frames, dtype=np.int64), begin, end
    else:
        units, unit_begin, unit_end = resample(begin, end, grid.fps)
    windows = step_windows(len(units), window=grid.window, stride=grid.stride)
    times = (unit_begin[windows[:, 0]] + unit_end[windows[:, -1]]) / 2
    return VideoGrid(units=units, windows=windows, times=times, duration=float(end[-1]))
