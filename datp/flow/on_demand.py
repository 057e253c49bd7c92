"""Flow computed from a video file on demand, for prediction: only the fields the sampled
segments read, converted, resized and quantized as ``datp flow`` stores them.

Dimension key: T segments, L flow-stack length, U distinct fields, H, W image size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datp.data.frames import quantize_flow
from datp.data.sampling import stack_indices
from datp.data.video import open_video
from datp.errors import DataError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: flow fields computed so far out of ``total``."""


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
        self.video_frames = self._reader.num_frames
        self.declared_frames = getattr(self._reader, "declared_frames", None)
        self.fps = self._reader.fps

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized flow ``[T, L, 2, H, W]``, stacks past the end repeating the last."""
        from datp.flow.extract import target_size
        from datp.flow.pixels import to_gray_resized

        fields = stack_indices(np.asarray(starts), length=length, num_frames=self.num_frames)
        unique = np.unique(fields)  # [U] field j: from frame j to frame j + 1
        needed = np.union1d(unique, unique + 1)  # [F] frames, each converted once
        frames = self._reader.read(needed)  # [F, H, W, 3]
        gray = to_gray_resized(frames, target_size(*frames.shape[1:3], self.short_side))
        prev = gray[np.searchsorted(needed, unique)]  # [U, h, w]
        next_ = gray[np.searchsorted(needed, unique + 1)]  # [U, h, w]
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
