"""Feature sequences on disk, read memory-mapped: datp's own files and the layouts of
ActionFormer / OpenTAD / VideoMAEv2 and of video_features.

T steps, D channels.

A feature sequence is float ``[T, D]`` for one video plus the time in seconds of every step and
the video's duration. Where each layout keeps them:

- ``datp`` (written by ``datp features``): ``<root>/<video>.npy`` ``[T, D]`` and
  ``<root>/<video>.json`` beside it (:data:`RECORD_KEYS`: the time of every step, the video's
  duration and frame count, how the features were made), and ``<root>/datp_features.json``,
  the settings of the folder. A file whose record names other settings than the folder's is an
  error: features made two ways are never averaged together silently.
- ``windows`` (ActionFormer, OpenTAD and VideoMAEv2's extraction scripts): ``<root>/<video>.npy``
  only (``<root>/<name>.npy`` in a flat folder). Step i covers the frames from
  ``i * stride + offset`` to ``+ window`` and its time is the window's centre,
  ``(i * stride + offset + window / 2) / fps`` (ActionFormer's convention). ``stride`` and
  ``window`` are what their YAML calls ``feat_stride`` and ``num_frames``; ``fps`` per video
  comes from an ActivityNet-style JSON (``database -> id -> {fps, duration}``) or is given (a
  given fps wins, as ActionFormer's ``default_fps``). The duration is the JSON's, else the end of
  the last window.
- ``video_features`` (v-iashin/video_features, ``on_extraction=save_numpy``): a flat folder of
  ``<stem>_<key>.npy`` ``[T, D]`` with ``<stem>_timestamps_ms.npy`` ``[T]`` and
  ``<stem>_fps.npy`` beside it, where ``stem`` is the video file's name without its extension
  and ``key`` the feature type (``clip``, ``resnet``, I3D's ``rgb`` and ``flow``, ...). A step's
  time is its timestamp; the duration is the last timestamp plus one frame (1 / fps).

What a layout does not say (no stride, no fps, two feature kinds in one folder) is one
``DataError`` naming the setting to give (:data:`SETTING_NAMES`), never a guess. Arrays are
opened with ``np.load(mmap_mode="r")``: reading N steps touches only their rows, so a
Kinetics-sized set need not fit in memory.
"""

from __future__ import annotations

import json
import math
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datp.choices import FeatureLayout
from datp.data.video import VIDEO_EXTENSIONS
from datp.errors import DataError

FEATURE_SUFFIX = ".npy"
RECORD_SUFFIX = ".json"
"""Beside each datp feature file: its record (written last: the file is finished once it
exists)."""
FOLDER_RECORD = "datp_features.json"
"""At the top of a ``datp features`` output folder: the settings every file there was made with."""
FORMAT_NAME = "datp-features"
FORMAT_VERSION = 1
RECORD_KEYS = (
    "format", "version", "video", "settings", "steps", "channels", "dtype", "times", "frames",
    "duration", "num_frames", "video_fps", "decoder", "device", "precision", "datp_version",
    "git_revision",
)
"""The keys of a datp feature file's record (``times``: seconds of every step; ``frames``:
``[first, last]`` source frame of every step; ``settings``: the folder's settings)."""

SETTING_NAMES = {
    "stride": "data.features_stride",
    "window": "data.features_window",
    "fps": "data.features_fps",
    "info": "data.features_info",
    "key": "data.features_key",
    "layout": "data.features_layout",
}
"""The setting a message asks for, for each keyword of :func:`open_feature_set`."""

VIDEO_FEATURES_EXTRAS = ("timestamps_ms", "fps")
"""The files video_features writes beside the features of a video (``<stem>_<extra>.npy``)."""


def strip_extension(video: str) -> str:
    """``Class/v_x.avi`` -> ``Class/v_x``; a frame folder's path (no video extension) as it is."""
    suffix = Path(video).suffix
    return video[: -len(suffix)] if suffix.lower() in VIDEO_EXTENSIONS else video


def feature_path(root: str | Path, video: str) -> Path:
    """``<root>/<video without its extension>.npy``: where the features of ``video`` (a path
    relative to the dataset's media folder, as the split readers give it) are."""
    return Path(root) / (strip_extension(video) + FEATURE_SUFFIX)


def record_path(path: Path) -> Path:
    """The record beside the feature file ``path``."""
    return path.with_suffix(RECORD_SUFFIX)


@dataclass(frozen=True)
class ArrayLayout:
    """Where the array of a ``.npy`` file lies: read from its header once."""

    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool


def read_layout(path: Path, *, ndim: int = 2) -> ArrayLayout:
    """The header of the ``.npy`` at ``path``: a float array of ``ndim`` dimensions, T >= 1."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(handle)
            layout = ArrayLayout(offset=handle.tell(), shape=shape, dtype=dtype, fortran=fortran)
    except FileNotFoundError as error:
        raise DataError(f"{path}: feature file does not exist") from error
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npy file ({error})") from error
    if len(shape) != ndim or shape[0] < 1 or not np.issubdtype(dtype, np.floating):
        expected = "[T, D]" if ndim == 2 else "[T]"
        raise DataError(f"{path}: expected a float {expected} array with T >= 1, got "
                        f"{dtype} {tuple(shape)}")
    return layout


def map_array(path: Path, layout: ArrayLayout) -> np.ndarray:
    """The array of ``path`` memory-mapped, read only: indexing N rows reads only their pages.
    (``mmap`` and ``np.frombuffer``: ``np.memmap`` and ``np.load(mmap_mode="r")`` map the same
    way with several times the Python work per call, which a loader pays for every item.)"""
    count = math.prod(layout.shape)
    try:
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as error:
        raise DataError(f"{path}: feature file does not exist") from error
    except (OSError, ValueError) as error:  # an empty file cannot be mapped
        raise DataError(f"{path}: not a readable .npy file ({error})") from error
    size = len(mapped)
    needed = layout.offset + count * layout.dtype.itemsize
    if size < needed:
        mapped.close()
        raise DataError(f"{path}: truncated: {size} bytes where its header's {layout.dtype} "
                        f"{tuple(layout.shape)} needs {needed}")
    array = np.frombuffer(mapped, dtype=layout.dtype, count=count, offset=layout.offset)
    return array.reshape(layout.shape, order="F" if layout.fortran else "C")


def load_array(path: Path, *, ndim: int = 2) -> np.ndarray:
    """The ``.npy`` at ``path`` memory-mapped (float, ``ndim`` dimensions, at least one row)."""
    return map_array(path, read_layout(path, ndim=ndim))


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DataError(f"{path}: {what} does not exist") from error
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable {what} ({error})") from error
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} is not a JSON object")
    return value


def window_times(num_steps: int, *, stride: float, window: float, fps: float,
                 offset: float = 0.0) -> np.ndarray:
    """float64 ``[T]``: seconds of each window's centre, ``(i * stride + offset + window / 2) /
    fps`` (ActionFormer's convention; stride, window and offset in frames)."""
    return (np.arange(num_steps) * stride + offset + window / 2) / fps


@dataclass(frozen=True)
class FeatureSequence:
    """One video's features: ``features`` ``[T, D]`` (memory-mapped), ``times`` float64 ``[T]``
    in seconds, ``duration`` in seconds."""

    path: Path
    features: np.ndarray
    times: np.ndarray
    duration: float

    @property
    def num_steps(self) -> int:
        return int(self.features.shape[0])

    @property
    def channels(self) -> int:
        return int(self.features.shape[1])

    def normalized_times(self, steps: np.ndarray) -> np.ndarray:
        """float32 ``[...]`` in [0, 1]: the time of ``steps`` as a fraction of the video."""
        return np.clip(self.times[steps] / self.duration, 0.0, 1.0).astype(np.float32)

    def rows(self, steps: np.ndarray, *, channels: int | None = None) -> np.ndarray:
        """float32 ``[K, D]``: the features of ``steps`` (only their rows are read); a
        ``DataError`` naming the file when they are not finite, or when D is not ``channels``
        (the set's)."""
        if channels is not None and self.channels != channels:
            raise DataError(f"{self.path}: {self.channels} channels, where the other files of "
                            f"its set have {channels}")
        rows = np.asarray(self.features[steps], dtype=np.float32)
        finite = np.isfinite(rows).all(axis=-1)
        if not finite.all():
            bad = np.asarray(steps)[~finite]
            shown = ", ".join(str(int(step)) for step in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise DataError(f"{self.path}: non-finite features at step(s) {shown}{more}")
        return rows

    # What ``datp check`` reads of a source (datp.data.check.check_source): steps are its frames.
    @property
    def num_frames(self) -> int:
        return self.num_steps

    def read(self, steps: list[int] | np.ndarray) -> np.ndarray:
        return self.rows(np.asarray(steps, dtype=np.int64))

    def close(self) -> None:
        """Nothing to close: the map is released with the array."""


Timing = tuple[np.ndarray, float]
"""(times float64 ``[T]`` in seconds, duration in seconds) of one video."""


def _open_cached(cache: dict, video: str, locate: Callable[[str], Path],
                 timing: Callable[[Path, int], Timing], where: Callable[[Path], Path] | None = None,
                 ) -> FeatureSequence:
    """The sequence of ``video``: its file's place, header and ``timing(path, T)`` found and
    checked the first time (kept in ``cache``; ``where`` names the file a timing problem is
    blamed on), its array mapped every time."""
    known = cache.get(video)
    if known is None:
        path = locate(video)
        layout = read_layout(path)
        times, duration = timing(path, layout.shape[0])
        blamed = where(path) if where else path
        if times.shape != (layout.shape[0],):
            raise DataError(f"{blamed}: {times.shape[0] if times.ndim else 0} step times for "
                            f"{layout.shape[0]} feature steps in {path.name}")
        if not np.isfinite(times).all() or not np.isfinite(duration) or duration <= 0:
            raise DataError(f"{blamed}: step times or duration are not finite positive seconds")
        known = cache[video] = (path, layout, times, float(duration))
    path, layout, times, duration = known
    return FeatureSequence(path=path, features=map_array(path, layout), times=times,
                           duration=duration)


@dataclass
class DatpFeatureSet:
    """Features written by ``datp features`` under ``root``."""

    root: Path
    settings: dict
    """The folder's settings (``datp_features.json``)."""
    layout: str = field(default="datp", init=False)
    _opened: dict = field(default_factory=dict, init=False, repr=False)

    def locate(self, video: str) -> Path:
        return feature_path(self.root, video)

    def missing(self, video: str) -> Path | None:
        """The first file of ``video``'s features that does not exist (its ``.npy``, then the
        record ``datp features`` writes last, once the video is finished), or None."""
        path = self.locate(video)
        return next((p for p in (path, record_path(path)) if not p.is_file()), None)

    def exists(self, video: str) -> bool:
        return self.missing(video) is None

    def describe(self) -> dict:
        """Which features, made how: for a run's protocol record."""
        return {"layout": self.layout, "root": str(self.root), "settings": self.settings}

    def channels(self) -> int:
        """D, as the folder's settings record it (else as its first file has it)."""
        recorded = (self.settings.get("backbone") or {}).get("channels")
        return int(recorded) if recorded else _first_channels(self.root, "**/*.npy")

    def open(self, video: str) -> FeatureSequence:
        return _open_cached(self._opened, video, self.locate, self._timing, record_path)

    def _timing(self, path: Path, steps: int) -> Timing:
        record = _read_json(record_path(path), "feature record")
        found = record.get("settings") or {}
        if found != self.settings:
            changed = sorted(k for k in {*self.settings, *found}
                             if found.get(k) != self.settings.get(k))
            raise DataError(
                f"{record_path(path)}: made with other settings than "
                f"{self.root / FOLDER_RECORD} ({', '.join(changed) or 'none recorded'}); "
                "features made two ways do not belong in one folder"
            )
        try:
            return np.asarray(record["times"], dtype=np.float64), float(record["duration"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{record_path(path)}: no valid times and duration "
                            f"({error})") from error


def open_feature_file(path: str | Path, reading: FeatureReading
                      ) -> tuple[FeatureSequence, dict | None]:
    """One feature file on its own (``datp predict FILE.npy``) and the settings it was made
    with: a datp file by its record beside it (its settings returned), any other by the layout
    ``reading`` gives, read in its folder (None: no settings recorded)."""
    path = Path(path)
    if not path.is_file() or path.suffix != FEATURE_SUFFIX:
        raise DataError(f"{path}: no such feature file (.npy)")
    if record_path(path).is_file():
        record = _read_json(record_path(path), "feature record")
        if record.get("format") == FORMAT_NAME:
            settings = record.get("settings") or {}
            return DatpFeatureSet(root=path.parent, settings=settings).open(path.stem), settings
    features = reading.open(path.parent)
    if isinstance(features, VideoFeaturesSet):
        suffix = f"_{features.key}{FEATURE_SUFFIX}"
        if not path.name.endswith(suffix):
            raise DataError(f"{path}: not a video_features file of kind {features.key!r} "
                            f"(<stem>{suffix})")
        return features.open(path.name[: -len(suffix)]), None
    if isinstance(features, DatpFeatureSet):
        raise DataError(f"{record_path(path)}: missing; a datp feature file carries its times "
                        "there")
    return features.open(path.stem), None


def read_activitynet_info(path: str | Path) -> dict[str, dict]:
    """``database -> id -> {...}`` of an ActivityNet-style JSON (ActionFormer's annotations),
    each entry's ``fps`` and ``duration`` where it has them."""
    path = Path(path)
    value = _read_json(path, "ActivityNet-style JSON")
    database = value.get("database")
    if not isinstance(database, dict):
        raise DataError(f"{path}: no 'database' object (expected database -> video id -> "
                        "{fps, duration, ...})")
    return {str(k): v for k, v in database.items() if isinstance(v, dict)}


@dataclass
class WindowFeatureSet:
    """``.npy`` files of ``[T, D]`` windows every ``stride`` frames (ActionFormer, OpenTAD,
    VideoMAEv2)."""

    root: Path
    stride: float
    window: float
    fps: float | None = None
    info: dict[str, dict] = field(default_factory=dict)
    """Per video id: its entry of an ActivityNet-style JSON."""
    offset: float = 0.0
    info_file: str = ""
    """The JSON ``info`` was read from, for the record."""
    layout: str = field(default="windows", init=False)
    _opened: dict = field(default_factory=dict, init=False, repr=False)

    def describe(self) -> dict:
        return {"layout": self.layout, "root": str(self.root), "stride": self.stride,
                "window": self.window, "fps": self.fps, "offset": self.offset,
                "info": self.info_file or None}

    def channels(self) -> int:
        """D of the first file (the dataset refuses a file with another)."""
        return _first_channels(self.root, "**/*.npy")

    def locate(self, video: str) -> Path:
        nested = feature_path(self.root, video)
        if nested.is_file():
            return nested
        flat = self.root / (Path(strip_extension(video)).name + FEATURE_SUFFIX)
        return flat if flat.is_file() else nested

    def missing(self, video: str) -> Path | None:
        path = self.locate(video)
        return None if path.is_file() else path

    def exists(self, video: str) -> bool:
        return self.missing(video) is None

    def _entry(self, name: str) -> dict:
        # ActivityNet's ids lack the "v_" its feature files carry (ActionFormer's file_prefix).
        return self.info.get(name) or self.info.get(name.removeprefix("v_")) or {}

    def open(self, video: str) -> FeatureSequence:
        return _open_cached(self._opened, video, self.locate, self._timing)

    def _timing(self, path: Path, steps: int) -> Timing:
        entry = self._entry(path.stem)
        fps = self.fps if self.fps is not None else entry.get("fps")
        if fps is None or not float(fps) > 0:
            where = "given" if self.info else "given, and no ActivityNet-style JSON names it"
            raise DataError(
                f"{path}: the frame rate of its video is not {where}; set "
                f"{SETTING_NAMES['fps']} (or {SETTING_NAMES['info']}, a JSON with "
                "database -> id -> fps)"
            )
        fps = float(fps)
        times = window_times(steps, stride=self.stride, window=self.window, fps=fps,
                             offset=self.offset)
        end = ((steps - 1) * self.stride + self.offset + self.window) / fps
        return times, float(entry.get("duration") or end)


@dataclass
class VideoFeaturesSet:
    """v-iashin/video_features output: ``<stem>_<key>.npy`` with its timestamps and fps."""

    root: Path
    key: str
    layout: str = field(default="video_features", init=False)
    _opened: dict = field(default_factory=dict, init=False, repr=False)

    def describe(self) -> dict:
        return {"layout": self.layout, "root": str(self.root), "key": self.key}

    def channels(self) -> int:
        """D of the first file of the key (the dataset refuses a file with another)."""
        return _first_channels(self.root, f"*_{self.key}{FEATURE_SUFFIX}")

    def _file(self, video: str, what: str) -> Path:
        return self.root / f"{Path(strip_extension(video)).name}_{what}{FEATURE_SUFFIX}"

    def locate(self, video: str) -> Path:
        return self._file(video, self.key)

    def missing(self, video: str) -> Path | None:
        files = (self._file(video, w) for w in (self.key, *VIDEO_FEATURES_EXTRAS))
        return next((path for path in files if not path.is_file()), None)

    def exists(self, video: str) -> bool:
        return self.missing(video) is None

    def open(self, video: str) -> FeatureSequence:
        return _open_cached(self._opened, video, self.locate, self._timing)

    def _timing(self, path: Path, steps: int) -> Timing:
        stem = path.name[: -len(f"_{self.key}{FEATURE_SUFFIX}")]
        stamps_path, fps_path = (self.root / f"{stem}_{what}{FEATURE_SUFFIX}"
                                 for what in ("timestamps_ms", "fps"))
        stamps = np.asarray(load_array(stamps_path, ndim=1), dtype=np.float64) / 1000.0
        try:
            fps = float(np.load(fps_path, allow_pickle=False))
        except FileNotFoundError as error:
            raise DataError(f"{fps_path}: does not exist (video_features writes it beside "
                            f"{path.name})") from error
        except (OSError, ValueError, TypeError) as error:
            raise DataError(f"{fps_path}: not a frame rate ({error})") from error
        if not fps > 0:
            raise DataError(f"{fps_path}: frame rate {fps} is not positive")
        return stamps, float(stamps[-1] + 1.0 / fps)


FeatureSet = DatpFeatureSet | WindowFeatureSet | VideoFeaturesSet
"""Each offers ``locate(video) -> Path``, ``exists(video) -> bool``, ``missing(video) -> Path |
None`` (the first of its files that does not exist), ``open(video) ->
FeatureSequence`` (``DataError`` naming the file when it cannot be read; a file's header and
times are read once per process), ``channels() -> int`` (D) and ``describe() -> dict`` (which
features, made how)."""


def _first_channels(root: Path, pattern: str) -> int:
    """D of the first feature file matching ``pattern`` under ``root`` (in sorted order)."""
    for path in sorted(root.glob(pattern)):
        if not path.name.endswith(tuple(f"_{extra}{FEATURE_SUFFIX}"
                                        for extra in VIDEO_FEATURES_EXTRAS)):
            return int(read_layout(path).shape[1])
    raise DataError(f"{root}: no feature files ({pattern})")


def _video_features_keys(root: Path) -> list[str]:
    """The feature keys of a video_features folder: every ``<stem>_<key>.npy`` of a stem that has
    timestamps (a stem may hold underscores; so may a key)."""
    names = [p.name for p in root.glob(f"*{FEATURE_SUFFIX}")]
    stamps = "_timestamps_ms" + FEATURE_SUFFIX
    stems = {name[: -len(stamps)] for name in names if name.endswith(stamps)}
    keys = set()
    for name in names:
        base = name[: -len(FEATURE_SUFFIX)]
        cuts = [i for i, char in enumerate(base) if char == "_"]
        for cut in reversed(cuts):  # the longest stem first
            if base[:cut] in stems:
                keys.add(base[cut + 1:])
                break
    return sorted(keys - set(VIDEO_FEATURES_EXTRAS))


def detect_layout(root: str | Path) -> str:
    """``datp`` where the folder record is, ``video_features`` where timestamp files are, else
    ``windows``; ``DataError`` for video_features files moved into subfolders."""
    root = Path(root)
    if (root / FOLDER_RECORD).is_file():
        return "datp"
    if next(root.glob("*_timestamps_ms.npy"), None) is not None:
        return "video_features"
    _refuse_nested_video_features(root)
    return "windows"


def _refuse_nested_video_features(root: Path) -> None:
    """video_features writes one flat folder (its files are named by the video's stem alone):
    timestamp files one or two folders down mean a rearranged copy, which would otherwise be
    read as another layout or as a folder without features."""
    for pattern in ("*/*_timestamps_ms.npy", "*/*/*_timestamps_ms.npy"):
        nested = next(root.glob(pattern), None)
        if nested is not None:
            raise DataError(
                f"{root}: video_features files lie in subfolders (e.g. "
                f"{nested.relative_to(root)}); video_features writes one flat folder and its "
                "files are named by the video's stem alone: point data.features_root at a "
                "flat folder")


FEATURE_LAYOUTS: dict[FeatureLayout, str] = {
    "auto": "datp where the folder record is, video_features where timestamp files are, else "
            "windows (detect_layout)",
    "datp": "datp features' files: .npy and its .json record, the folder's record",
    "windows": ".npy windows every stride frames (ActionFormer, OpenTAD, VideoMAEv2)",
    "video_features": "<stem>_<key>.npy with its timestamps_ms and fps (v-iashin/video_features)",
}
"""data.features_layout -> what it reads (each opened by :func:`open_feature_set`)."""
LAYOUTS: tuple[str, ...] = tuple(FEATURE_LAYOUTS)


@dataclass(frozen=True)
class FeatureReading:
    """How a features folder is read: the settings of :func:`open_feature_set` but the folder
    (``datp.data.build`` makes it of the ``[data]`` section; ``datp check`` of its options)."""

    layout: FeatureLayout = "auto"
    stride: float | None = None
    window: float | None = None
    fps: float | None = None
    info: Path | None = None
    key: str | None = None

    def open(self, root: str | Path, *, top: str | Path | None = None) -> FeatureSet:
        """The set under ``root`` (``top``: the features folder it lies in, whose record
        counts for it: :func:`open_feature_set`)."""
        return open_feature_set(root, layout=self.layout, stride=self.stride,
                                window=self.window, fps=self.fps, info=self.info, key=self.key,
                                top=top)


def _record_folder(root: Path, top: str | Path | None) -> Path | None:
    """``root``, or the nearest folder above it up to ``top``, that holds a datp folder record."""
    folders = [root]
    if top is not None and Path(top) in root.parents:
        folders += [p for p in root.parents if Path(top) in (p, *p.parents)]
    return next((folder for folder in folders if (folder / FOLDER_RECORD).is_file()), None)


def open_feature_set(
    root: str | Path, *, layout: FeatureLayout = "auto", stride: float | None = None,
    window: float | None = None, fps: float | None = None, info: str | Path | None = None,
    key: str | None = None, offset: float = 0.0, top: str | Path | None = None,
) -> FeatureSet:
    """The feature set under ``root``: ``layout`` (``auto``: :func:`detect_layout`) and, for
    ``windows``, ``stride`` and ``window`` in frames (required), ``fps`` (or ``info``, an
    ActivityNet-style JSON giving each video's fps and duration) and ``offset`` (frames before
    the first window); for ``video_features`` the feature ``key`` when the folder holds several
    kinds. Settings that do not apply to the layout are refused, not ignored. ``top``: a folder
    above ``root`` (a dataset's features, ``root`` one subset's folder in it) whose datp record
    counts for ``root`` when ``root`` has none: ``datp features`` of the whole dataset at once."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: features folder not found")
    if layout not in LAYOUTS:
        raise DataError(f"{SETTING_NAMES['layout']} = {layout!r}: choose one of "
                        f"{', '.join(LAYOUTS)}")
    recorded = _record_folder(root, top)
    found = layout if layout != "auto" else "datp" if recorded else detect_layout(root)
    given = {"stride": stride, "window": window, "fps": fps, "info": info, "key": key}
    usable = {"datp": (), "windows": ("stride", "window", "fps", "info"),
              "video_features": ("key",)}[found]
    extra = [name for name, value in given.items() if value is not None and name not in usable]
    if extra:
        raise DataError(f"{root}: {found} features carry their own "
                        f"{', '.join(extra)}; leave {', '.join(SETTING_NAMES[n] for n in extra)} "
                        "unset")
    if found == "datp":
        return DatpFeatureSet(root=root, settings=_read_json((recorded or root) / FOLDER_RECORD,
                                                             "features settings"))
    if found == "video_features":
        keys = _video_features_keys(root)
        if key is None:
            if not keys:
                _refuse_nested_video_features(root)
            if len(keys) != 1:
                what = f"several kinds ({', '.join(keys)})" if keys else "no features"
                raise DataError(f"{root}: a video_features folder with {what}; set "
                                f"{SETTING_NAMES['key']} to the one to read")
            key = keys[0]
        return VideoFeaturesSet(root=root, key=key)
    missing = [name for name in ("stride", "window") if given[name] is None]
    if missing:
        names = " and ".join(SETTING_NAMES[n] for n in missing)
        raise DataError(
            f"{root}: .npy features without a record of how they were made; set {names} "
            "(in frames: feat_stride and num_frames in ActionFormer's YAML)"
        )
    if stride <= 0 or window <= 0:
        raise DataError(f"{root}: {SETTING_NAMES['stride']} and {SETTING_NAMES['window']} must "
                        f"be positive, got {stride} and {window}")
    return WindowFeatureSet(root=root, stride=float(stride), window=float(window),
                            fps=None if fps is None else float(fps),
                            info=read_activitynet_info(info) if info is not None else {},
                            offset=float(offset), info_file="" if info is None else str(info))
