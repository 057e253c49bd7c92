"""Reading datp's compact flow file ``<video>.flow`` (written by :mod:`datp.flow.storage`).

T flow fields (frame pairs), L fields per stack, H, W image size.

Layout: a 64-byte header (magic ``DATPFLOW``, version, T, H, W, bound) then the TSN-quantized
fields as uint8 ``[T, 2, H, W]`` (x then y; :func:`datp.data.frames.quantize_flow`). The file is
memory-mapped: reading a stack touches only its bytes, no JPEG decoding.

:class:`CompactFlow` is a ``datp.data.frames.FlowSource`` like ``FlowFolder``:
``read_flow(starts, length)`` returns uint8 ``[T, L, 2, H, W]``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datp.data.errors import DataError
from datp.data.frames import FlowFolder

COMPACT_SUFFIX = ".flow"
MAGIC = b"DATPFLOW"
VERSION = 1
HEADER = struct.Struct("<8sIIIIf36x")  # magic, version, T, H, W, bound; 64 bytes
assert HEADER.size == 64


def _stack_indices(path: Path, starts: Sequence[int], length: int, count: int) -> np.ndarray:
    first = np.asarray(starts, dtype=np.int64).reshape(-1)
    if length < 1:
        raise ValueError(f"flow stack length must be >= 1, got {length}")
    if first.size == 0:
        raise ValueError("read_flow needs at least one start")
    if first.min() < 0 or first.max() >= count:
        raise IndexError(
            f"{path}: starts must lie in [0, {count}), got {first.min()}..{first.max()}"
        )
    return np.minimum(first[:, None] + np.arange(length)[None, :], count - 1)  # [T, L]


class CompactFlow:
    """A compact ``.flow`` file, memory-mapped; a ``FlowSource`` like ``FlowFolder``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(HEADER.size)
        except OSError as error:
            raise DataError(f"{self.path}: cannot open flow file ({error})") from error
        if len(header) < HEADER.size:
            raise DataError(f"{self.path}: truncated flow header")
        magic, version, t, h, w, bound = HEADER.unpack(header)
        if magic != MAGIC:
            raise DataError(f"{self.path}: not a datp flow file (magic {magic!r})")
        if version != VERSION:
            raise DataError(f"{self.path}: flow file version {version}, expected {VERSION}")
        expected = HEADER.size + t * 2 * h * w
        size = self.path.stat().st_size
        if size != expected:
            raise DataError(f"{self.path}: {size} bytes, expected {expected} for {t} fields")
        if t < 1:
            raise DataError(f"{self.path}: holds no flow field")
        self.num_frames = t
        self.height, self.width = h, w
        self.bound = float(bound)
        self._data = np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=HEADER.size, shape=(t, 2, h, w)
        )

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized ``[T, L, 2, H, W]``; stacks past the end repeat the last field."""
        wanted = _stack_indices(self.path, starts, length, self.num_frames)
        return np.asarray(self._data[wanted])  # [T, L, 2, H, W]

    def __repr__(self) -> str:
        return f"CompactFlow({str(self.path)!r}, num_frames={self.num_frames})"


def open_flow(path: str | Path) -> CompactFlow | FlowFolder:
    """A ``.flow`` file or a TSN flow folder, by what ``path`` is."""
    path = Path(path)
    if path.suffix == COMPACT_SUFFIX or path.with_name(path.name + COMPACT_SUFFIX).is_file():
        return CompactFlow(
            path if path.suffix == COMPACT_SUFFIX else path.with_name(path.name + COMPACT_SUFFIX)
        )
    return FlowFolder(path)
