"""What ``datp features`` reads: the videos, frame folders or flow under a folder or named by a
list file, each opened as units (frames, or flow fields) to read.

K units, L flow fields per stack, H, W image size.

A folder is searched as ``datp flow`` searches it (:func:`datp.flow.extract.find_videos`): every
video file below it, or, where there is none, every frame folder (``img_00001.jpg``, ...); for
a flow backbone every stored flow (``.flow``, ``.zflow``, TSN ``flow_x_00001.jpg`` folders). A
list file names one per line, relative to its own folder: a TSN / mmaction2 list (``path
[num_frames] label``) or bare paths. Features go to the same relative path without the
extension, so ``Class/v_x.avi`` gives ``Class/v_x.npy``, where a split's item ``Class/v_x.avi``
looks for them.

Frame folders and flow carry no frame rate: it is given (``--frame-rate``), never assumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datp.data.compact_flow import FLOW_FILE_SUFFIXES, open_flow
from datp.data.features import strip_extension
from datp.data.frames import FrameFolder
from datp.data.splits import read_list_file
from datp.data.video import open_video
from datp.data.walk import walk
from datp.errors import DataError
from datp.flow.extract import find_videos
from datp.flow.storage import MARKER as FLOW_MARKER

FIRST_FRAME = "img_00001.jpg"
FIRST_FLOW = "flow_x_00001.jpg"


def source_name(video: str) -> str:
    """The relative path its features take, without ``.npy``: the extension of a video or flow
    file removed."""
    for suffix in FLOW_FILE_SUFFIXES:
        if video.endswith(suffix):
            return video[: -len(suffix)]
    return strip_extension(video)


def _folders_with(root: Path, marker: str) -> list[str]:
    return [(folder).relative_to(root).as_posix() for folder, _, files in walk(root)
            if marker in files and folder != root]


def find_sources(root: str | Path, *, flow: bool = False) -> list[str]:
    """Relative paths of what to extract under ``root``, sorted: video files, else frame
    folders; with ``flow``, flow files and TSN flow folders."""
    root = Path(root)
    if not flow:
        return find_videos(root) or sorted(_folders_with(root, FIRST_FRAME))
    if not root.is_dir():
        raise DataError(f"{root}: flow folder not found")
    files = [(folder / name).relative_to(root).as_posix() for folder, _, names in walk(root)
             for name in names if Path(name).suffix in FLOW_FILE_SUFFIXES]
    folders = set(_folders_with(root, FIRST_FLOW)) | set(_folders_with(root, FLOW_MARKER))
    return sorted([*files, *folders])


def read_source_list(path: str | Path) -> list[str]:
    """The paths a list file names, relative to its folder: a TSN / mmaction2 list (``path
    [num_frames] label``) or one path per line."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()
                 if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the list ({error})") from error
    labelled = lines and all(len(line.split()) >= 2 and line.split()[-1].isdigit()
                             for line in lines)
    names = [item.path for item in read_list_file(path).items] if labelled else lines
    base = path.parent.resolve()
    videos = []
    for number, name in enumerate(names, start=1):
        if Path(name).is_absolute():
            try:
                name = Path(name).resolve().relative_to(base).as_posix()
            except ValueError:
                raise DataError(f"{path}:{number}: {name} is not under {base}; list paths "
                                "relative to the list's folder") from None
        videos.append(name)
    return videos


def list_sources(src: str | Path, *, flow: bool = False) -> tuple[Path, list[str]]:
    """(the folder paths are relative to, the relative paths) of a folder or a list file."""
    src = Path(src)
    if src.is_file():
        base, videos = src.parent, read_source_list(src)
    elif src.is_dir():
        base, videos = src, find_sources(src, flow=flow)
    else:
        raise DataError(f"{src}: no such folder or list file")
    if not videos:
        what = "flow" if flow else "video files or frame folders"
        raise DataError(f"{src}: no {what} found")
    return base, videos


def _frame_rate(path: Path, frame_rate: float | None, what: str) -> float:
    if frame_rate is None:
        raise DataError(f"{path}: {what} carries no frame rate; give --frame-rate (the rate its "
                        "frames were extracted at)")
    return frame_rate


class RgbUnits:
    """A video file (its presentation times) or a frame folder (``frame_rate`` given), read as
    uint8 ``[K, 3, H, W]``."""

    def __init__(self, path: Path, *, decoder: str = "pyav", frame_rate: float | None = None):
        self.path = path
        if path.is_dir():
            self.source = FrameFolder(path)
            self.fps: float | None = _frame_rate(path, frame_rate, "a frame folder")
            self.frame_times: np.ndarray | None = None
        else:
            self.source = open_video(path, decoder=decoder)
            self.fps = self.source.fps
            self.frame_times = getattr(self.source, "frame_times", None)
            if self.frame_times is None and not self.fps:
                raise DataError(f"{path}: the video gives neither time stamps nor a frame rate")
        self.num_units = self.source.num_frames

    def read(self, indices: np.ndarray) -> Tensor:
        """uint8 ``[K, 3, H, W]``: the frames ``indices`` (repeats allowed)."""
        return torch.from_numpy(self.source.read(indices)).permute(0, 3, 1, 2)

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


class FlowUnits:
    """Stored flow (a ``.flow`` or ``.zflow`` file, a TSN folder), read as stacks of L fields,
    uint8 ``[K, 2L, H, W]`` (x1, y1, x2, y2, ...), as datp's flow stream reads them."""

    def __init__(self, path: Path, *, frame_rate: float | None = None) -> None:
        self.path = path
        self.source = open_flow(path)
        self.fps: float | None = _frame_rate(path, frame_rate, "flow")
        self.frame_times: np.ndarray | None = None
        self.num_units = self.source.num_frames

    def read_stacks(self, starts: np.ndarray, length: int) -> Tensor:
        stacks = torch.from_numpy(self.source.read_flow(starts, length))  # [K, L, 2, H, W]
        return stacks.flatten(1, 2)  # [K, 2L, H, W]

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def open_units(path: Path, *, flow: bool, decoder: str = "pyav",
               frame_rate: float | None = None) -> RgbUnits | FlowUnits:
    if flow:
        return FlowUnits(path, frame_rate=frame_rate)
    return RgbUnits(path, decoder=decoder, frame_rate=frame_rate)

