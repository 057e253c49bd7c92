"""Writing feature files: ``<video>.npy`` ``[T, D]`` and ``<video>.json`` beside it, and the
folder's record (read by :mod:`datp.data.features`, which spells the format).

T steps, D channels.

Each file goes to a temporary name ``.<name>.tmp-<host>-<pid>`` beside its final one, is
fsynced and renamed (:func:`datp.flow.storage.atomic_output`, which also removes what crashed
writers of that file left). The record is written last: a video is finished once its record
exists, and a crash between the two files leaves a video that is extracted again.

``float16`` is the default storage: half the bytes of ``float32`` on disk and through the memory
map while a head trains, for a rounding (a relative 2^-11) below what bf16 computation on a GPU
already leaves in the features (2^-8). Values beyond float16's range (65504) are refused with a
message asking for ``--dtype float32``, never stored as infinities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from datp.data.features import FEATURE_SUFFIX, FOLDER_RECORD, feature_path, record_path
from datp.errors import InputError
from datp.flow.storage import atomic_output, read_settings, record_settings

StorageDtype = Literal["float16", "float32"]
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")


def output_path(out_root: str | Path, name: str) -> Path:
    """The feature file of the source ``name`` (relative, its extension removed)."""
    return feature_path(out_root, name)


def is_finished(path: Path) -> bool:
    """True when ``path`` (an output ``.npy``) and its record are completely written."""
    return record_path(path).is_file() and path.is_file()


def record_folder(out_root: str | Path, settings: dict) -> None:
    """Record ``settings`` for a new output folder, or refuse other settings than those an
    existing folder (being resumed) was made with. A folder that holds feature files without
    its record is refused too: their settings are unknown, and a video finished there would be
    skipped as done whatever made it."""
    out_root = Path(out_root)
    if folder_settings(out_root) is None:
        stray = next(out_root.rglob(f"*{FEATURE_SUFFIX}"), None) if out_root.is_dir() else None
        if stray is not None:
            raise InputError(f"{out_root}: holds feature files ({stray.relative_to(out_root)}, "
                             f"...) but not the folder's record {FOLDER_RECORD}, which says how "
                             "they were made; extract into another folder")
    record_settings(out_root, settings, name=FOLDER_RECORD, what="features")


def folder_settings(out_root: str | Path) -> dict | None:
    """The settings recorded for ``out_root`` (None: none)."""
    return read_settings(out_root, name=FOLDER_RECORD)


def write_features(path: Path, features: np.ndarray, record: dict, *,
                   dtype: StorageDtype = "float16") -> None:
    """Write float ``[T, D]`` ``features`` as ``dtype`` at ``path``, then ``record`` beside it
    (both atomically, the record last)."""
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"{path}: expected features [T, D], got {tuple(features.shape)}")
    if dtype not in STORAGE_DTYPES:
        raise InputError(f"--dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: the backbone gave non-finite features")
    largest = float(np.abs(features).max())
    if largest > float(np.finfo(dtype).max):
        raise InputError(f"{path}: features up to {largest:.4g} exceed {dtype}'s range; "
                         "extract with --dtype float32")
    stored = np.ascontiguousarray(features, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as handle:
        np.save(handle, stored, allow_pickle=False)
    with atomic_output(record_path(path)) as handle:
        handle.write((json.dumps(record) + "\n").encode())
