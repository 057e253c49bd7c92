"""Writing extracted flow: TSN JPEG folders and our per-video files (read by datp.data).

T flow fields (frame pairs), L fields per stack, H, W image size.

Both formats hold the flow quantized as TSN does: clamp to +-bound (20 px) and map to 0..255 as
``round(255 (v + bound) / (2 bound))`` (:func:`datp.data.frames.quantize_flow`).

- ``jpeg``: the dense_flow / mmaction2 layout, a folder per video with ``flow_x_00001.jpg``,
  ``flow_y_00001.jpg`` (1-based, grayscale) and ``flow.json`` (bound, count, size, backend).
  The folder is written under a temporary name beside its final one, ``flow.json`` last, made
  durable once (one ``syncfs`` of its filesystem, or one fsync per file where there is no
  ``syncfs``, then one of the folder), then renamed: a folder under the final name is always
  complete.
- ``compact``: one file per video, ``<video>.flow``: a 64-byte header (magic ``DATPFLOW``,
  version, T, H, W, bound) then uint8 ``[T, 2, H, W]``. It is memory-mapped: reading a stack
  touches only its bytes, no JPEG decoding. Written to a temporary name, fsynced, renamed.
- ``zstd``: one file per video, ``<video>.zflow``: a header, an index, then each field
  compressed losslessly as one zstd frame (layout in :mod:`datp.data.zstd_flow`). Exact values;
  on real footage at 340x256 about twice the bytes of the JPEGs (1.4x what their folders occupy
  on disk) and 1.7x faster to read, a tenth of the compact file (BENCHMARKS.md, "Flow files").
  Needs the ``zstd`` extra (``zstandard``).

Every writer works under a temporary name ``.<name>.tmp-<pid>`` beside the final one: a failed
write (a full disk, an interrupt) removes its temporary output, and a later write of the same
video removes what earlier crashed runs left there.

The readers live in :mod:`datp.data` (``FlowFolder`` in ``frames.py``, ``CompactFlow`` and
``open_flow`` in ``compact_flow.py``, ``ZstdFlow`` in ``zstd_flow.py``): data reads every stored
format, flow computes and writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from datp.data.compact_flow import COMPACT_SUFFIX, HEADER, MAGIC, VERSION
from datp.data.frames import FLOW_BOUND, quantize_flow
from datp.data.zstd_flow import (
    ZSTD_HEADER,
    ZSTD_MAGIC,
    ZSTD_SUFFIX,
    ZSTD_VERSION,
    import_zstd,
)
from datp.errors import DataError, InputError
from datp.io import atomic_file, atomic_write_text, fsync_folder, make_durable

FORMATS = ("jpeg", "compact", "zstd")
FILE_SUFFIXES = {"compact": COMPACT_SUFFIX, "zstd": ZSTD_SUFFIX}
"""The formats that write one file per video, and its suffix."""
ZSTD_LEVEL = 9
"""zstd level of ``.zflow`` files (BENCHMARKS.md compares levels)."""
MARKER = "flow.json"
"""Written last inside a finished JPEG flow folder."""


SETTINGS_NAME = "datp_flow.json"
"""Written at the top of a ``datp flow`` output folder: how its flow was computed."""


def read_settings(out_root: str | Path, *, name: str = SETTINGS_NAME) -> dict | None:
    """The settings a ``datp flow`` output folder was extracted with (None: none recorded);
    ``name``: the record's file (``datp features`` keeps its own)."""
    path = Path(out_root) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable settings ({error})") from error


def record_settings(
    out_root: str | Path, settings: dict, *, name: str = SETTINGS_NAME, what: str = "flow"
) -> None:
    """Record ``settings`` for a new output folder, or check that an existing folder (being
    resumed) was made with the same ones: ``what`` (flow, features) of two settings in one
    folder is refused."""
    found = read_settings(out_root, name=name)
    if found is None:
        payload = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        atomic_write_text(Path(out_root) / name, payload)
        return
    changed = sorted(k for k in settings if found.get(k) != settings[k])
    if changed:
        details = ", ".join(f"{k} {found.get(k)!r} there, {settings[k]!r} now" for k in changed)
        raise InputError(
            f"{out_root} holds {what} extracted with other settings ({details}); "
            "extract into another folder or use the same settings"
        )


def output_path(out_root: str | Path, video: str, fmt: str) -> Path:
    """Where the flow of ``video`` (relative path, extension stripped) goes."""
    if fmt not in FORMATS:
        raise ValueError(f"flow format must be one of {FORMATS}, got {fmt!r}")
    base = Path(out_root) / video
    suffix = FILE_SUFFIXES.get(fmt)
    return base.with_name(base.name + suffix) if suffix else base


def is_finished(path: Path, fmt: str) -> bool:
    """True when ``path`` (from :func:`output_path`) holds a completely written video."""
    if fmt == "jpeg":
        return (path / MARKER).is_file()
    return path.is_file()


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary outputs for ``path`` (from :func:`output_path`) that earlier writers
    left when they crashed or were killed; returns what was removed.

    Only this video's, and only those of processes that are gone: a temporary is named
    ``.<name>.tmp-<host>-<pid>``, and one of a live process on this host (another shard writing
    the same output right now) is left alone. Another host's are left too: on a shared disk this
    host cannot tell whether their writer is alive.
    """
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-(?P<host>.+)-(?P<pid>\d+)")
    host = socket.gethostname()
    leftovers = []
    for candidate in sorted(path.parent.iterdir()):
        found = pattern.fullmatch(candidate.name)
        if found and found["host"] == host and not _process_alive(int(found["pid"])):
            _remove(candidate)
            leftovers.append(candidate)
    return leftovers


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """:func:`datp.io.atomic_file` under this module's temporary name, after removing what
    crashed writers of ``path`` left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    with atomic_file(path, temporary=_temporary(path)) as handle:
        yield handle


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OSError("JPEG encoding failed")
        return buffer.tobytes()
    import io

    from PIL import Image

    stream = io.BytesIO()
    Image.fromarray(image).save(stream, format="JPEG", quality=quality)
    return stream.getvalue()


def write_jpeg_flow(
    folder: str | Path,
    flow: np.ndarray,
    *,
    bound: float = FLOW_BOUND,
    quality: int = 95,
    info: dict | None = None,
) -> None:
    """Write ``[T, 2, H, W]`` flow (float pixels, or uint8 quantized with ``bound``) as a
    finished TSN folder (atomically, see module)."""
    folder = Path(folder)
    quantized = _quantized(folder, flow, bound)  # [T, 2, H, W]
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    temporary = _temporary(folder)
    try:
        _write_jpeg_folder(temporary, quantized, bound=bound, quality=quality, info=info)
        if folder.exists():  # an unfinished leftover under the final name (never a finished one)
            shutil.rmtree(folder)
        os.rename(temporary, folder)
    except BaseException:
        _remove(temporary)
        raise
    fsync_folder(folder.parent)


def _write_jpeg_folder(
    temporary: Path, quantized: np.ndarray, *, bound: float, quality: int, info: dict | None
) -> None:
    """The TSN folder of uint8 ``[T, 2, H, W]`` at ``temporary``, made durable once."""
    temporary.mkdir()
    files = []
    for i, field in enumerate(quantized, start=1):
        for axis, image in zip("xy", field, strict=True):
            files.append(temporary / f"flow_{axis}_{i:05d}.jpg")
            files[-1].write_bytes(_encode_jpeg(image, quality))
    meta = {
        "bound": bound,
        "num_fields": int(quantized.shape[0]),
        "height": int(quantized.shape[2]),
        "width": int(quantized.shape[3]),
        "quantization": "round(255 * (clip(v, -bound, bound) + bound) / (2 * bound))",
        **(info or {}),
    }
    marker = temporary / MARKER
    marker.write_text(json.dumps(meta, indent=1) + "\n")
    make_durable(temporary, [*files, marker])


def write_compact_flow(path: str | Path, flow: np.ndarray, *, bound: float = FLOW_BOUND) -> None:
    """Write ``[T, 2, H, W]`` flow (float pixels, or uint8 quantized with ``bound``) as one
    compact file (atomically, see module)."""
    path = Path(path)
    quantized = np.ascontiguousarray(_quantized(path, flow, bound))
    t, _, h, w = quantized.shape
    with atomic_output(path) as handle:
        handle.write(HEADER.pack(MAGIC, VERSION, t, h, w, bound))
        handle.write(quantized.tobytes())


def write_zstd_flow(
    path: str | Path, flow: np.ndarray, *, bound: float = FLOW_BOUND, level: int = ZSTD_LEVEL
) -> None:
    """Write ``[T, 2, H, W]`` flow (float pixels, or uint8 quantized with ``bound``) as one
    ``.zflow`` file (atomically, see module)."""
    zstd = import_zstd()
    path = Path(path)
    quantized = _quantized(path, flow, bound)  # [T, 2, H, W]
    t, _, h, w = quantized.shape
    compressor = zstd.ZstdCompressor(level=level, write_checksum=True)
    chunks = [compressor.compress(np.ascontiguousarray(field).tobytes()) for field in quantized]
    first = ZSTD_HEADER.size + 8 * (t + 1)
    index = first + np.concatenate([[0], np.cumsum([len(chunk) for chunk in chunks])])
    with atomic_output(path) as handle:
        handle.write(ZSTD_HEADER.pack(ZSTD_MAGIC, ZSTD_VERSION, t, h, w, bound, level))
        handle.write(index.astype("<u8").tobytes())
        for chunk in chunks:
            handle.write(chunk)


WRITERS = {"jpeg": write_jpeg_flow, "compact": write_compact_flow, "zstd": write_zstd_flow}
"""The writer of each format: ``writer(path, flow)`` with ``path`` from :func:`output_path`."""


def _quantized(path: Path, flow: np.ndarray, bound: float) -> np.ndarray:
    """uint8 ``[T, 2, H, W]``: ``flow`` itself when it is uint8 (quantized where it was computed,
    :meth:`datp.flow.backends.TorchTVL1.fields`), else its float pixels quantized."""
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"{path}: expected flow [T, 2, H, W], got {tuple(flow.shape)}")
    if flow.dtype == np.uint8:
        return flow
    if not np.isfinite(flow).all():
        raise ValueError(f"{path}: flow holds non-finite values")
    return quantize_flow(flow, bound=bound)
