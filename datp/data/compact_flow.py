"""Reading datp's compact flow file ``<video>.flow`` (written by :mod:`datp.flow.storage`).

T flow fields (frame pairs), L fields per stack, H, W image size.

Layout: a 64-byte header (magic ``DATPFLOW``, version, T, H, W, bound) then the TSN-quantized
fields as uint8 ``[T, 2, H, W]`` (x then y; :func:`datp.data.frames.quantize_flow`). The file is
memory-mapped: reading a stack touches only its bytes, no JPEG decoding.

:class:`CompactFlow` is a ``datp.data.frames.FlowSource`` like ``FlowFolder``:
``read_flow(starts, length)`` returns uint8 ``[T, L, 2, H, W]``. :func:`open_flow` opens any
stored flow (this file, the zstd file of :mod:`datp.data.zstd_flow`, or a TSN folder).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datp.data.frames import FlowFolder, flow_stack_fields
from datp.data.zstd_flow import ZSTD_SUFFIX, ZstdFlow
from datp.errors import DataError

COMPACT_SUFFIX = ".flow"
MAGIC = b"DATPFLOW"
VERSION = 1
HEADER = struct.Struct("<8sIIIIf36x")  # magic, version, T, H, W, bound; 64 bytes
assert HEADER.size == 64


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
        wanted = flow_stack_fields(self.path, starts, length, self.num_frames)
        return np.asarray(self._data[wanted])  # [T, L, 2, H, W]

    def __repr__(self) -> str:
        return f"CompactFlow({str(self.path)!r}, num_frames={self.num_frames})"


FLOW_FILE_SUFFIXES = (COMPACT_SUFFIX, ZSTD_SUFFIX)
"""The per-video flow files, beside where a video's TSN flow folder would be."""


def flow_file(folder: str | Path) -> Path | None:
    """The per-video flow file (``<folder>.zflow`` or ``<folder>.flow``) that exists for the
    TSN folder path ``folder``, or None."""
    folder = Path(folder)
    for suffix in FLOW_FILE_SUFFIXES:
        candidate = folder.with_name(folder.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def open_flow(path: str | Path) -> CompactFlow | ZstdFlow | FlowFolder:
    """A ``.flow`` or ``.zflow`` file or a TSN flow folder, by what ``path`` is: a file's own
    path, or the folder path, beside which a per-video file is looked for first."""
    path = Path(path)
    if path.suffix not in FLOW_FILE_SUFFIXES:
        path = flow_file(path) or path
    if path.suffix == COMPACT_SUFFIX:
        return CompactFlow(path)
    if path.suffix == ZSTD_SUFFIX:
        return ZstdFlow(path)
    return FlowFolder(path)
