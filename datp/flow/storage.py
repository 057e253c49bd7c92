"""Writing extracted flow: TSN JPEG folders and our compact per-video file (read by datp.data).

T flow fields (frame pairs), L fields per stack, H, W image size.

Both formats hold the flow quantized as TSN does: clamp to +-bound (20 px) and map to 0..255 as
``round(255 (v + bound) / (2 bound))`` (:func:`datp.data.frames.quantize_flow`).

- ``jpeg``: the dense_flow / mmaction2 layout, a folder per video with ``flow_x_00001.jpg``,
  ``flow_y_00001.jpg`` (1-based, grayscale) and ``flow.json`` (bound, count, size, backend).
  The folder is written under a temporary name beside its final one, every file fsynced,
  ``flow.json`` written last, then renamed: a folder under the final name is always complete.
- ``compact``: one file per video, ``<video>.flow``: a 64-byte header (magic ``DATPFLOW``,
  version, T, H, W, bound) then uint8 ``[T, 2, H, W]``. It is memory-mapped: reading a stack
  touches only its bytes, no JPEG decoding. Written to a temporary name, fsynced, renamed.

The readers live in :mod:`datp.data` (``FlowFolder`` in ``frames.py``, ``CompactFlow`` and
``open_flow`` in ``compact_flow.py``): data reads every stored format, flow computes and writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from datp.data.compact_flow import COMPACT_SUFFIX, HEADER, MAGIC, VERSION
from datp.data.errors import DataError
from datp.data.frames import FLOW_BOUND, quantize_flow

FORMATS = ("jpeg", "compact")
MARKER = "flow.json"
"""Written last inside a finished JPEG flow folder."""


SETTINGS_NAME = "datp_flow.json"
"""Written at the top of a ``datp flow`` output folder: how its flow was computed."""


def read_settings(out_root: str | Path) -> dict | None:
    """The settings a ``datp flow`` output folder was extracted with (None: none recorded)."""
    path = Path(out_root) / SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable flow settings ({error})") from error


def record_settings(out_root: str | Path, settings: dict) -> None:
    """Record ``settings`` for a new output folder, or check that an existing folder (being
    resumed) was made with the same ones: flow of two settings in one folder is refused."""
    from datp.checkpoint import atomic_write_bytes

    found = read_settings(out_root)
    if found is None:
        payload = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(Path(out_root) / SETTINGS_NAME, payload.encode())
        return
    changed = sorted(k for k in settings if found.get(k) != settings[k])
    if changed:
        details = ", ".join(f"{k} {found.get(k)!r} there, {settings[k]!r} now" for k in changed)
        raise ValueError(
            f"{out_root} holds flow extracted with other settings ({details}); "
            "extract into another folder or use the same settings"
        )


def output_path(out_root: str | Path, video: str, fmt: str) -> Path:
    """Where the flow of ``video`` (relative path, extension stripped) goes."""
    if fmt not in FORMATS:
        raise ValueError(f"flow format must be one of {FORMATS}, got {fmt!r}")
    base = Path(out_root) / video
    return base.with_name(base.name + COMPACT_SUFFIX) if fmt == "compact" else base


def is_finished(path: Path, fmt: str) -> bool:
    """True when ``path`` (from :func:`output_path`) holds a completely written video."""
    if fmt == "jpeg":
        return (path / MARKER).is_file()
    return path.is_file()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


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
    """Write float ``[T, 2, H, W]`` flow as a finished TSN folder (atomically, see module)."""
    folder = Path(folder)
    _check_flow(folder, flow)
    quantized = quantize_flow(flow, bound=bound)  # [T, 2, H, W]
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(folder)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    for i, field in enumerate(quantized, start=1):
        for axis, image in zip("xy", field, strict=True):
            with open(temporary / f"flow_{axis}_{i:05d}.jpg", "wb") as handle:
                handle.write(_encode_jpeg(image, quality))
                handle.flush()
                os.fsync(handle.fileno())
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
    _fsync_file(marker)
    _fsync_dir(temporary)
    if folder.exists():  # an unfinished leftover under the final name (never a finished one)
        shutil.rmtree(folder)
    os.rename(temporary, folder)
    _fsync_dir(folder.parent)


def write_compact_flow(path: str | Path, flow: np.ndarray, *, bound: float = FLOW_BOUND) -> None:
    """Write float ``[T, 2, H, W]`` flow as one compact file (atomically, see module)."""
    path = Path(path)
    _check_flow(path, flow)
    quantized = np.ascontiguousarray(quantize_flow(flow, bound=bound))
    t, _, h, w = quantized.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    with open(temporary, "wb") as handle:
        handle.write(HEADER.pack(MAGIC, VERSION, t, h, w, bound))
        handle.write(quantized.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _check_flow(path: Path, flow: np.ndarray) -> None:
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"{path}: expected flow [T, 2, H, W], got {tuple(flow.shape)}")
    if not np.isfinite(flow).all():
        raise ValueError(f"{path}: flow holds non-finite values")
