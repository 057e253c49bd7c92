"""Where a dataset keeps each video's media, and how one is opened: video files, frame folders,
and the flow extracted from them.

:data:`SOURCES` is the table of ``data.source`` (held against ``datp.choices.Source`` by
``tests/test_choices.py``): each kind's usual folders under a dataset root and what one item
is. :class:`SourceOpener` opens an item's source; flow (``data.modality = "flow"``) is opened
from its own folder (:func:`flow_folder`) whatever the source of the frames was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datp.choices import Source
from datp.data.compact_flow import FLOW_FILE_SUFFIXES, flow_file, open_flow
from datp.data.frames import FlowFolder, FrameFolder
from datp.data.splits import VideoItem
from datp.data.video import VIDEO_EXTENSIONS, OpenReaders, VideoReader, open_video


def strip_video_extension(path: str) -> str:
    """``Class/v_x.avi`` -> ``Class/v_x`` (the video's frame or flow folder); others unchanged."""
    suffix = Path(path).suffix
    return path[: -len(suffix)] if suffix.lower() in VIDEO_EXTENSIONS else path


def flow_folder(root: str | Path, flow_root: str = "") -> Path:
    """Where a dataset's flow lies: ``root/flow_root`` (``root/flow`` by default; an absolute
    ``flow_root`` replaces ``root``)."""
    return Path(root) / (flow_root or "flow")


@dataclass(frozen=True)
class SourceKind:
    """How one kind of media is stored."""

    folders: tuple[str, ...]
    """The folders under a dataset root that hold them, in the order they are looked for (a
    format may add its own, e.g. UCF101's ``UCF-101``)."""
    locate: Callable[[Path, str], Path]
    """``(base, item path) -> the file or folder``."""
    is_file: bool
    """An item is a file (else a folder)."""
    what: str
    """How a list of them is named in messages."""
    open: Callable[[Path, SourceOpener], Any]
    """``(path, opener) -> the source``: a frame source (``read``) or a flow source
    (``read_flow``), see docs/ARCHITECTURE.md."""


def _open_video(path: Path, opener: SourceOpener) -> Any:
    if opener.readers is not None:
        return opener.readers.open(path, decoder=opener.decoder)
    return open_video(path, decoder=opener.decoder)


SOURCES: dict[Source, SourceKind] = {
    "video": SourceKind(folders=("videos",), locate=lambda base, path: base / path,
                        is_file=True, what="video files", open=_open_video),
    "frames": SourceKind(folders=("rawframes", "frames"),
                         locate=lambda base, path: base / strip_video_extension(path),
                         is_file=False, what="frame folders",
                         open=lambda path, opener: FrameFolder(path)),
}
"""data.source -> where its media are kept and how an item finds them."""

FLOW = SourceKind(folders=("flow",), is_file=False, what="flow folders or .flow files",
                  open=lambda path, opener: open_flow(path),
                  locate=lambda base, path: (flow_file(base / strip_video_extension(path))
                                             or base / strip_video_extension(path)))
"""Flow, laid out like the frame folders: a TSN folder or a ``.flow`` / ``.zflow`` file."""


@dataclass(frozen=True)
class SourceOpener:
    """Opens an item's source under ``base``: a video file, a frame folder, or flow stored as a
    TSN folder (``flow_x_00001.jpg`` ..) or as a per-video ``<video>.zflow`` / ``.flow`` file
    (datp.flow; see ``datp.data.compact_flow.open_flow``).

    A plain object rather than a closure, so datasets pickle into spawned DataLoader workers.
    """

    kind: str
    """A source of :data:`SOURCES`, or ``"flow"``."""
    base: Path
    decoder: str = "pyav"
    """For video files: pyav | torchcodec."""
    readers: OpenReaders | None = field(default=None, compare=False, repr=False)
    """For video files: readers kept open per process (None: open and close per read)."""

    @property
    def stored(self) -> SourceKind:
        return FLOW if self.kind == "flow" else SOURCES[self.kind]

    def locate(self, item: VideoItem) -> Path:
        return self.stored.locate(self.base, item.path)

    def exists(self, item: VideoItem) -> bool:
        path = self.locate(item)
        if self.stored.is_file or path.suffix in FLOW_FILE_SUFFIXES:
            return path.is_file()
        return path.is_dir()

    def __call__(self, item: VideoItem) -> VideoReader | FrameFolder | FlowFolder:
        return self.stored.open(self.locate(item), self)

    def release(self, source: Any) -> None:
        """Done reading ``source``: close it, unless it is one of the readers kept open."""
        close = getattr(source, "close", None)
        if close is not None and not (self.readers is not None and self.readers.holds(source)):
            close()
