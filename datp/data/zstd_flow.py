"""Reading datp's compressed flow file ``<video>.zflow`` (written by :mod:`datp.flow.storage`).

T flow fields (frame pairs), L fields per stack, H, W image size.

Layout (little-endian):

- a 64-byte header: magic ``DATPZFLW``, version, T, H, W, bound, zstd level (for the record);
- the index: T + 1 uint64 byte offsets, field i being bytes ``[index[i], index[i + 1])``, the
  last offset the file's size;
- T chunks, each one zstd frame (with its content size and checksum) holding the field's
  TSN-quantized uint8 ``[2, H, W]`` (x then y; :func:`datp.data.frames.quantize_flow`).

Lossless: a field reads back exactly as it was quantized, unlike a JPEG folder. Opening reads
the header and index in one read; a clip reads each run of consecutive fields it needs with one
``pread`` and decompresses only those fields. A truncated or corrupt file is a ``DataError``
naming it (zstd checks every frame's checksum).

Needs the ``zstandard`` package (``pip install 'datp[zstd]'``), imported when a file is opened.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datp.data.frames import flow_stack_fields
from datp.errors import DataError, MissingDependency

ZSTD_SUFFIX = ".zflow"
ZSTD_MAGIC = b"DATPZFLW"
ZSTD_VERSION = 1
ZSTD_HEADER = struct.Struct("<8sIIIIfI32x")  # magic, version, T, H, W, bound, level; 64 bytes
assert ZSTD_HEADER.size == 64
MAX_SIDE = 1 << 14
"""Frame sides beyond this (16384 px) mark a corrupt header."""


def import_zstd():
    """The ``zstandard`` module, or an ImportError naming the extra to install."""
    try:
        import zstandard
    except ImportError as error:
        raise MissingDependency(
            "zstd flow files (.zflow) need zstandard: pip install 'datp[zstd]'"
        ) from error
    return zstandard


class ZstdFlow:
    """A ``.zflow`` file; a ``FlowSource`` like ``FlowFolder``. Holds the file open until
    :meth:`close` (the dataset closes every source after reading it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._zstd = import_zstd()
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as error:
            raise DataError(f"{self.path}: cannot open flow file ({error})") from error
        try:
            self._read_index()
        except BaseException:
            self._file.close()
            raise
        self._decompressor = self._zstd.ZstdDecompressor()

    def _read_index(self) -> None:
        header = self._file.read(ZSTD_HEADER.size)
        if len(header) < ZSTD_HEADER.size:
            raise DataError(f"{self.path}: truncated flow header")
        magic, version, t, h, w, bound, _ = ZSTD_HEADER.unpack(header)
        if magic != ZSTD_MAGIC:
            raise DataError(f"{self.path}: not a datp zstd flow file (magic {magic!r})")
        if version != ZSTD_VERSION:
            raise DataError(f"{self.path}: flow file version {version}, expected {ZSTD_VERSION}")
        if t < 1 or h < 1 or w < 1:
            raise DataError(f"{self.path}: holds no flow field ({t} fields of {h}x{w})")
        size = os.fstat(self._file.fileno()).st_size
        first = ZSTD_HEADER.size + 8 * (t + 1)
        # A corrupt header must not make the reader allocate what it claims: the index has to
        # fit in the file, and a field in a frame size no camera has.
        if first > size or h > MAX_SIDE or w > MAX_SIDE:
            raise DataError(f"{self.path}: corrupt flow header ({t} fields of {h}x{w} in a file "
                            f"of {size} bytes)")
        raw = self._file.read(8 * (t + 1))
        index = np.frombuffer(raw, dtype="<u8").astype(np.int64)
        if len(index) != t + 1 or index[0] != first or index[-1] != size:
            raise DataError(
                f"{self.path}: truncated or corrupt flow index ({size} bytes, the index "
                f"expects {index[-1] if len(index) == t + 1 else 'more'})"
            )
        if np.any(np.diff(index) <= 0):
            raise DataError(f"{self.path}: corrupt flow index (offsets not increasing)")
        self.num_frames = t
        self.height, self.width = h, w
        self.bound = float(bound)
        self._index = index

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized ``[T, L, 2, H, W]``; stacks past the end repeat the last field."""
        wanted = flow_stack_fields(self.path, starts, length, self.num_frames)  # [T, L]
        unique = np.unique(wanted)  # [U]
        fields = np.empty((len(unique), 2, self.height, self.width), dtype=np.uint8)
        # Runs of consecutive fields: one read each (a stack of L is one run).
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        position = 0
        for run in np.split(unique, breaks):
            begin, end = self._index[run[0]], self._index[run[-1] + 1]
            data = os.pread(self._file.fileno(), int(end - begin), int(begin))
            if len(data) != end - begin:
                raise DataError(f"{self.path}: truncated flow file")
            for field in run.tolist():
                chunk = data[self._index[field] - begin : self._index[field + 1] - begin]
                fields[position] = self._decode(field, chunk)
                position += 1
        return fields[np.searchsorted(unique, wanted)]  # [T, L, 2, H, W]

    def _decode(self, field: int, chunk: bytes) -> np.ndarray:
        expected = 2 * self.height * self.width
        try:
            raw = self._decompressor.decompress(chunk, max_output_size=expected)
        except self._zstd.ZstdError as error:
            raise DataError(f"{self.path}: flow field {field} is corrupt ({error})") from error
        if len(raw) != expected:
            raise DataError(
                f"{self.path}: flow field {field} holds {len(raw)} bytes, expected {expected}"
            )
        return np.frombuffer(raw, dtype=np.uint8).reshape(2, self.height, self.width)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ZstdFlow:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZstdFlow({str(self.path)!r}, num_frames={self.num_frames})"
