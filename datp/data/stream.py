"""A long video as a stream: its frames at chosen indices or times, decoded a chunk at a time, so
that memory is bounded by the chunk and not by the video's length.

T frames of the video, M frames requested, t frames in a chunk, H, W image size.

Any :class:`~datp.data.video.FrameSource` streams (PyAV's frame-exact ``VideoReader``, torchcodec,
frame folders): each chunk is one ``read`` of the next ``chunk_frames`` requested indices, which
a ``VideoReader`` serves by seeking to the keyframe at or before the chunk's first frame and
decoding forward, so a chunk costs at most one group of pictures more than its frames. What
stays in memory besides the chunk is the reader's packet index (a few bytes per frame of the
video, read once when it opens) and whatever the consumer keeps of each chunk (a segment's
features, not its frames).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from datp.data.video import FrameSource, VideoReader

CHUNK_FRAMES = 64
"""Frames decoded per chunk by default: 64 frames of 1080p RGB are 400 MB, of 320x240 15 MB."""


@dataclass(frozen=True)
class FrameChunk:
    first: int
    """Position of the chunk's first frame in the request."""
    indices: np.ndarray
    """int64 ``[t]``: the video frames the chunk holds, as requested."""
    frames: np.ndarray
    """uint8 RGB ``[t, H, W, 3]``."""


def stream_frames(
    source: FrameSource, indices: Sequence[int] | np.ndarray, *, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[FrameChunk]:
    """The frames of ``indices [M]`` (0-based, non-decreasing, repeats allowed: a sampling in
    time order), ``chunk_frames`` requested entries at a time, in the request's order.

    From a ``VideoReader`` every chunk's ``frames`` are decoded into one buffer, so a chunk is
    overwritten by the next: copy what is kept. (Fresh arrays per chunk let the allocator's heap
    grow by a chunk now and then: +28 MiB over a 60-minute video, benchmarks/long_video.py.)"""
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if wanted.size and (np.diff(wanted) < 0).any():
        raise ValueError("stream_frames reads forward: sort the indices (a sampling in time order)")
    if wanted.size and (wanted[0] < 0 or wanted[-1] >= source.num_frames):
        raise IndexError(f"{source.path}: frame indices must lie in [0, {source.num_frames}), "
                         f"got {wanted[0]}..{wanted[-1]}")
    buffer = None  # [chunk_frames, H, W, 3], reused by a VideoReader
    for first in range(0, wanted.size, chunk_frames):
        chunk = wanted[first:first + chunk_frames]
        if not isinstance(source, VideoReader):
            yield FrameChunk(first=first, indices=chunk, frames=source.read(chunk))
            continue
        if buffer is None:
            buffer = source.read(chunk[:1])
            buffer = np.empty((chunk_frames, *buffer.shape[1:]), dtype=np.uint8)
        yield FrameChunk(first=first, indices=chunk,
                         frames=source.read(chunk, out=buffer[:len(chunk)]))


def frames_at_times(
    seconds: Sequence[float] | np.ndarray,
    *,
    num_frames: int,
    fps: float | None,
    frame_times: np.ndarray | None = None,
) -> np.ndarray:
    """int64 ``[M]``: the frame shown at each time (seconds from the first frame): the last frame
    whose presentation time is at or before it (``frame_times [T]``, right for a variable frame
    rate), else ``floor(seconds * fps)``; clamped to the video."""
    times = np.asarray(seconds, dtype=np.float64).reshape(-1)
    if not np.isfinite(times).all():
        raise ValueError("times must be finite")
    if frame_times is not None and len(frame_times) == num_frames:
        index = np.searchsorted(np.asarray(frame_times, dtype=np.float64), times,
                                side="right") - 1
    elif fps:
        index = np.floor(times * fps + 1e-9).astype(np.int64)  # 1e-9: 0.2 s * 25 fps is frame 5
    else:
        raise ValueError("frames_at_times needs the frames' presentation times or a frame rate")
    return np.clip(index, 0, num_frames - 1).astype(np.int64)
