"""TSN segment sampling as pure functions of (frame count, N, L, rng).

N segments, L frames (or flow fields) per segment, F frames in the video.

Indices are 0-based *start* indices: a segment reads frames ``start .. start + L - 1`` (L = 1 for
RGB). TSN (Wang et al. 2016) splits the ``F - L + 1`` valid starts into N equal segments and takes
a random start in each when training, the centre of each when testing. For videos too short for
that, TSN falls back to sorted random starts (training) and to frame 0 for every segment; we take
mmaction2's fallback instead, spreading the N starts evenly over the video (frames repeat), which
keeps the temporal order DATP's times rely on. :func:`datp.scoring.repeats_frames` says when a
video is that short, for the warnings.

Videos of any length: :func:`segments_for_duration` gives N from the duration (``--segments
auto`` or seconds per segment, bounded), :func:`parse_segments` reads the option.
"""

from __future__ import annotations

import math

import numpy as np

from datp.errors import InputError


def _valid_starts(num_frames: int, num_segments: int, length: int) -> int:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1 or length < 1:
        raise ValueError(f"num_segments and length must be >= 1, got {num_segments}, {length}")
    return max(num_frames - length + 1, 1)


def train_starts(
    num_frames: int, num_segments: int, *, length: int = 1, rng: np.random.Generator
) -> np.ndarray:
    """int64 ``[N]``: a random start in each of N equal segments (TSN training).

    With fewer valid starts than N the starts are spread evenly, frames repeating (mmaction2).
    """
    span = _valid_starts(num_frames, num_segments, length)
    average = span // num_segments
    if average > 0:
        starts = np.arange(num_segments) * average + rng.integers(0, average, size=num_segments)
    else:  # span < N: spread evenly, repeating frames
        starts = np.floor(np.arange(num_segments) * (span / num_segments))
    return np.minimum(starts, span - 1).astype(np.int64)


def eval_starts(num_frames: int, num_segments: int, *, length: int = 1) -> np.ndarray:
    """int64 ``[N]``: the centre of each of N equal segments (TSN testing); repeats when short."""
    span = _valid_starts(num_frames, num_segments, length)
    tick = span / num_segments
    starts = (tick / 2 + tick * np.arange(num_segments)).astype(np.int64)
    return np.minimum(starts, span - 1)


def dense_starts(
    num_frames: int, num_segments: int, *, length: int = 1, num_clips: int = 2
) -> np.ndarray:
    """int64 ``[num_clips, N]``: ``num_clips`` shifted copies of the test sampling.

    Clip k takes offset ``(k + 0.5) / num_clips`` inside every segment, so the clips cover each
    segment evenly (``num_clips = 1`` is :func:`eval_starts`). TSN's 25-segment test is
    ``eval_starts(F, 25)``.
    """
    span = _valid_starts(num_frames, num_segments, length)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    tick = span / num_segments
    offsets = (np.arange(num_clips)[:, None] + 0.5) / num_clips  # [num_clips, 1]
    starts = (tick * (np.arange(num_segments)[None, :] + offsets)).astype(np.int64)
    return np.minimum(starts, span - 1)


def stack_indices(starts: np.ndarray, *, length: int, num_frames: int) -> np.ndarray:
    """int64 ``[..., L]``: the frames each start reads, clamped to the last frame."""
    starts = np.asarray(starts, dtype=np.int64)
    return np.minimum(starts[..., None] + np.arange(length), num_frames - 1)


def normalized_times(starts: np.ndarray, *, num_frames: int, length: int = 1) -> np.ndarray:
    """float32 ``[...]`` in [0, 1]: the time of each sampled frame, or of each stack's centre.

    Frame j covers [j, j + 1) of a video of F frames, so a stack of L from ``start`` is centred
    at ``(start + L / 2) / F`` (for L = 1 the middle of the frame).
    """
    starts = np.asarray(starts, dtype=np.float64)
    times = (starts + min(length, num_frames) / 2) / num_frames
    return np.clip(times, 0.0, 1.0).astype(np.float32)


# --- how many segments a video of any length gets ------------------------------------------------

AUTO_SECONDS_PER_SEGMENT = 1.0
"""``--segments auto``: one segment per second of video (a 60-minute video gets 3,600)."""
MAX_SEGMENTS = 14_400
"""The most segments a video gets from its duration: four hours at one per second."""


def segments_for_duration(
    duration: float,
    *,
    seconds_per_segment: float = AUTO_SECONDS_PER_SEGMENT,
    minimum: int = 1,
    maximum: int = MAX_SEGMENTS,
) -> int:
    """``ceil(duration / seconds_per_segment)`` segments, within ``[minimum, maximum]`` (the
    minimum is typically the checkpoint's test segments, so a short video is sampled as
    before)."""
    if not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"the duration must be finite seconds >= 0, got {duration}")
    if not (math.isfinite(seconds_per_segment) and seconds_per_segment > 0):
        raise ValueError(f"seconds per segment must be > 0, got {seconds_per_segment}")
    if not 1 <= minimum <= maximum:
        raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
    # The 1e-9 keeps 60 s at 0.1 s per segment at 600 segments, not 601.
    wanted = math.ceil(duration / seconds_per_segment - 1e-9)
    return min(max(wanted, minimum), maximum)


def parse_segments(text: str) -> int | float:
    """``--segments``: ``"25"`` -> 25 segments (an int), ``"2s"`` / ``"2.5s"`` -> that many seconds
    per segment (a float), ``"auto"`` -> :data:`AUTO_SECONDS_PER_SEGMENT`. ``InputError``
    otherwise."""
    value = text.strip().lower()
    if value == "auto":
        return AUTO_SECONDS_PER_SEGMENT
    try:
        if value.endswith("s"):
            seconds = float(value[:-1])
            if math.isfinite(seconds) and seconds > 0:
                return seconds
        elif value.isdigit() and int(value) >= 1:
            return int(value)
    except ValueError:
        pass
    raise InputError(f"--segments {text}: expected a count (25), seconds per segment (2s or 0.5s) "
                     "or auto (one per second)")
