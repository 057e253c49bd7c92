"""Where a dataset keeps each video's media, and how one is opened: video files, frame folders,
the flow extracted from them, and feature sequences.

:data:`SOURCES` is the table of ``data.source`` (held against ``datp.choices.Source`` by
``tests/test_choices.py``): each kind's usual folders under a dataset root and what one item
is. :class:`SourceOpener` opens an item's source; flow (``data.modality = "flow"``) is opened
from its own folder (:func:`flow_folder`) whatever the source of the frames was. Features are
found by their set (:mod:`datp.data.features`: its layout says where a video's file is), and
an opened feature sequence reads as a source of steps (``num_frames``, ``read``), which is what
``datp check`` reads; training reads features through :mod:`datp.data.feature_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datp.choices import Source
from datp.data.compact_flow import FLOW_FILE_SUFFIXES, flow_file, open_flow
from datp.data.features import FeatureSet
from datp.data.frames import FlowFolder, FrameFolder
from datp.data.splits import Split, VideoItem, keep_existing
from datp.data.video import VIDEO_EXTENSIONS, OpenReaders, VideoReader, open_video


def strip_video_extension(path: str) -> str:
    """``Class/v_x.avi`` -> ``Class/v_x`` (the video's frame or flow folder); others unchanged."""
    suffix = Path(path).suffix
    return path[: -len(suffix)] if suffix.lower() in VIDEO_EXTENSIONS else path


def flow_folder(root: str | Path, flow_root: str = "") -> Path:
    """Where a dataset's flow lies: ``root/flow_root`` (``root/flow`` by default; an absolute
    ``flow_root`` replaces ``root``)."""
    return Path(root) / (flow_root or "flow")


def features_folder(root: str | Path, features_root: str = "") -> Path:
    """Where a dataset's features lie: ``root/features_root`` (``root/features`` by default;
    an absolute ``features_root`` replaces ``root``)."""
    return Path(root) / (features_root or "features")


@dataclass(frozen=True)
class SourceKind:
    """How one kind of media is stored."""

    folders: tuple[str, ...]
    """The folders under a dataset root that hold them, in the order they are looked for (a
    format may add its own, e.g. UCF101's ``UCF-101``)."""
    locate: Callable[[SourceOpener, str], Path]
    """``(opener, item path) -> the file or folder`` (under ``opener.base``)."""
    is_file: bool
    """An item is a file (else a folder)."""
    what: str
    """How a list of them is named in messages."""
    open: Callable[[SourceOpener, str], Any]
    """``(opener, item path) -> the source``: a frame source (``read``), a flow source
    (``read_flow``), see docs/ARCHITECTURE.md, or a feature sequence (its steps ``read``)."""
    exists: Callable[[SourceOpener, str], bool] | None = None
    """``(opener, item path) -> whether it is there``; None: the located file (a folder when
    not ``is_file``) exists."""


def _open_video(opener: SourceOpener, path: str) -> Any:
    located = opener.locate_path(path)
    if opener.readers is not None:
        return opener.readers.open(located, decoder=opener.decoder)
    return open_video(located, decoder=opener.decoder)


def _feature_set(opener: SourceOpener) -> FeatureSet:
    if opener.features is None:
        raise ValueError("an opener of features needs its feature set (features=...)")
    return opener.features


SOURCES: dict[Source, SourceKind] = {
    "video": SourceKind(folders=("videos",), locate=lambda opener, path: opener.base / path,
                        is_file=True, what="video files", open=_open_video),
    "frames": SourceKind(
        folders=("rawframes", "frames"), is_file=False, what="frame folders",
        locate=lambda opener, path: opener.base / strip_video_extension(path),
        open=lambda opener, path: FrameFolder(opener.locate_path(path))),
    "features": SourceKind(
        folders=(), is_file=True, what="feature files",
        locate=lambda opener, path: _feature_set(opener).locate(path),
        open=lambda opener, path: _feature_set(opener).open(path),
        exists=lambda opener, path: _feature_set(opener).exists(path)),
}
"""data.source -> where its media are kept and how an item finds them. Features have no
folder of their own under a dataset root (``data.features_root``, :func:`features_folder`)."""

FLOW = SourceKind(folders=("flow",), is_file=False, what="flow folders or .flow files",
                  open=lambda opener, path: open_flow(opener.locate_path(path)),
                  locate=lambda opener, path: (
                      flow_file(opener.base / strip_video_extension(path))
                      or opener.base / strip_video_extension(path)))
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
    features: FeatureSet | None = field(default=None, compare=False, repr=False)
    """For features: the set under ``base`` (:func:`datp.data.features.open_feature_set`)."""

    @property
    def stored(self) -> SourceKind:
        return FLOW if self.kind == "flow" else SOURCES[self.kind]

    def locate_path(self, path: str) -> Path:
        return self.stored.locate(self, path)

    def locate(self, item: VideoItem) -> Path:
        return self.locate_path(item.path)

    def existing(self, split: Split, *, skip_bad_videos: bool
                 ) -> tuple[list[VideoItem], list[str]]:
        """The items of ``split`` whose media exist, and a "where: what" line for each other
        one; raises DataError for those unless ``skip_bad_videos`` (then each is logged)."""
        what = "file" if self.stored.is_file else "folder"

        def problem_of(item: VideoItem) -> str | None:
            return (None if self.exists(item)
                    else f"{item.origin}: {what} {self.locate(item)} does not exist")

        return keep_existing(split, problem_of, skip_bad_videos=skip_bad_videos,
                             none_left="none of its videos exist")

    def jpeg_folder(self, item: VideoItem) -> bool:
        """Whether ``item`` is stored as a folder of JPEG files (frames, or TSN's flow images):
        what a GPU can decode itself (``data.decode = "device"``)."""
        return not self.stored.is_file and self.locate(item).suffix not in FLOW_FILE_SUFFIXES

    def exists(self, item: VideoItem) -> bool:
        if self.stored.exists is not None:
            return self.stored.exists(self, item.path)
        path = self.locate(item)
        if self.stored.is_file or path.suffix in FLOW_FILE_SUFFIXES:
            return path.is_file()
        return path.is_dir()

    def __call__(self, item: VideoItem) -> VideoReader | FrameFolder | FlowFolder | Any:
        return self.stored.open(self, item.path)

    def release(self, source: Any) -> None:
        """Done reading ``source``: close it, unless it is one of the readers kept open."""
        close = getattr(source, "close", None)
        if close is not None and not (self.readers is not None and self.readers.holds(source)):
            close()
