"""Find every problem of a dataset in one pass: annotations, missing files, unreadable videos,
train/test leaks, duplicate lines, videos no list names, videos too short for the segments.

Each problem is a :class:`Problem`, an error (the data is wrong) or a warning (it trains, but
probably not as meant), handed to ``report`` as soon as it is found. Nothing stops at the first
one, and one mistake is reported once: files are looked for in the folder the layout gives even
when an annotation file is broken, and when none of the files a folder should hold is there, that
is one problem, not one per file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datp.data.features import FeatureReading, FeatureSet
from datp.data.formats import (
    OFFICIAL_SPLITS,
    dataset_format,
    media_folder,
    present_splits,
    read_split,
)
from datp.data.sources import SourceOpener, features_folder, flow_folder, strip_video_extension
from datp.data.splits import Split, VideoItem, repeated_items
from datp.data.temporal_annotations import check_annotation_file
from datp.data.video import VIDEO_EXTENSIONS
from datp.data.walk import walk
from datp.errors import DataError
from datp.scoring import frames_for_segments, repeats_frames

UNLISTED_SHOWN = 5
"""How many of the videos that no list names the warning names."""


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    where: str
    """The file, or file:line."""
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.what}" if self.where else \
            f"{self.severity}: {self.what}"


def _error(line: str) -> Problem:
    """One of ``DataError.problems`` ("where: what") as an error."""
    where, sep, what = line.partition(": ")
    return Problem("error", where, what) if sep else Problem("error", "", line)


class CaseFinder:
    """Finds an existing path that differs from a missing one only in letter case (UCF101 names
    class ``HandstandPushups`` ``v_HandStandPushups_g01_c01.avi``, and tools that derive folders
    from file names follow the file). Lists each folder once."""

    def __init__(self) -> None:
        self._listings: dict[Path, dict[str, str]] = {}
        self.suggested: set[Path] = set()
        """Every path :meth:`find` returned (so that no other problem names them again)."""

    def find(self, path: Path) -> Path | None:
        found, parts = (Path(path.anchor), path.parts[1:]) if path.is_absolute() else \
            (Path(), path.parts)
        for part in parts:
            if not (found / part).exists():
                match = self._listing(found).get(part.lower())
                if match is None:
                    return None
                part = match
            found = found / part
        if found == path:
            return None
        self.suggested.add(found)
        return found

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            self._listings[folder] = {}
            for name in names:
                self._listings[folder].setdefault(name.lower(), name)
        return self._listings[folder]


def check_source(
    opener: SourceOpener, item: VideoItem, *, full: bool = False, segments: int = 1,
    flow_length: int = 1, case: CaseFinder | None = None,
) -> list[Problem]:
    """Problems of one item's source: missing, unreadable, empty, truncated, missing frames, and
    (a warning) too short for ``segments`` segments of ``flow_length`` flow fields (flow only).

    Opens it (which counts the frames exactly), then decodes the first and the last frame, or
    every frame with ``full``.
    """
    path = opener.locate(item)
    if not opener.exists(item):
        if opener.features is not None:  # the file of the set that is absent (a record, say)
            path = opener.features.missing(item.path) or path
        what = "file" if opener.stored.is_file else "folder"
        similar = (case or CaseFinder()).find(path)
        hint = f"; did you mean {similar}?" if similar is not None else ""
        return [Problem("error", str(path), f"{what} does not exist (named at {item.origin})"
                                            f"{hint}")]
    try:
        source = opener(item)
    except DataError as error:
        return [_error(line) for line in error.problems]
    try:
        count = source.num_frames
        declared = getattr(source, "declared_frames", None)
        if declared and declared > count:
            return [Problem("error", str(path), f"truncated: the container declares {declared} "
                                                f"frames, only {count} are there")]
        indices = list(range(count)) if full else sorted({0, count - 1})
        if opener.kind == "flow":
            source.read_flow(indices, 1)
        else:
            source.read(indices)
    except DataError as error:
        return [_error(line) for line in error.problems]
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return _too_short(str(path), count, opener.kind, segments, flow_length)


def _too_short(path: str, count: int, kind: str, segments: int, flow_length: int) -> list[Problem]:
    """A warning when TSN sampling must repeat frames (or flow fields) to fill the segments."""
    flow = kind == "flow"
    if not repeats_frames(count, segments, length=flow_length if flow else 1):
        return []
    if kind == "features":
        return [Problem("warning", path, f"{count} feature step(s), fewer than the {segments} "
                                         "segments: steps repeat (--segments)")]
    if flow:
        needed = frames_for_segments(segments, length=flow_length)
        return [Problem("warning", path,
                        f"{count} flow field(s), fewer than the {needed} that {segments} "
                        f"segments of {flow_length} fields need: fields repeat "
                        "(--segments, --flow-length)")]
    return [Problem("warning", path, f"{count} frame(s), fewer than the {segments} segments: "
                                     "frames repeat (--segments)")]


@dataclass
class _List:
    """One subset of one split as read: its items (None when nothing could be read)."""

    number: int
    subset: str
    split: Split | None
    media: Path


def _read_lists(
    *, root: Path, format: str, splits: Sequence[int], annotations: str, train_list: str,
    test_list: str, source: str, report: Callable[[Problem], None],
    features: _Features | None = None,
) -> tuple[list[_List], bool]:
    """Every split's train and test list, reporting their problems once each; and whether every
    one was read without a problem."""
    lists = []
    seen: set[str] = set()
    clean = True
    for number in splits if dataset_format(format).numbered_splits else (1,):
        for subset in ("train", "test"):
            media_root = root if features is None else features.root
            media = media_folder(root=media_root, format=format, subset=subset, source=source)
            split_data: Split | None
            try:
                split_data, _ = read_split(
                    root=root, format=format, subset=subset, split=number,
                    annotations=annotations, train_list=train_list, test_list=test_list,
                    source=source, media_root=media_root,
                    exists=None if features is None else features.exists,
                )
            except DataError as error:
                clean = False
                for line in error.problems:
                    if line not in seen:  # classInd.txt is read for every subset
                        seen.add(line)
                        report(_error(line))
                split_data = error.partial if isinstance(error.partial, Split) else None
            lists.append(_List(number, subset, split_data, media))
    return lists, clean


def _check_lists(lists: list[_List], *, format: str, report: Callable[[Problem], None]) -> None:
    """Duplicate lines within a list, and videos in both the train and the test list of a
    split."""
    by_split: dict[int, dict[str, dict[str, VideoItem]]] = {}
    for entry in lists:
        if entry.split is None:
            continue
        for item, earlier in repeated_items(entry.split.items):
            relabelled = earlier.label != item.label
            report(Problem("error" if relabelled else "warning", item.origin,
                           f"{item.path} listed again{', with another label' * relabelled} "
                           f"(first at {earlier.origin})"))
        first: dict[str, VideoItem] = {}
        for item in entry.split.items:
            first.setdefault(item.path, item)
        by_split.setdefault(entry.number, {})[entry.subset] = first
    if dataset_format(format).per_subset_folders:  # relative to train/ and test/: no leak
        folders = {entry.subset: entry.media for entry in lists}
        if folders.get("train") == folders.get("test"):
            report(Problem("warning", str(folders["train"]),
                           "no train/ and test/ folders: every video is used for training and "
                           "for testing"))
        return
    for subsets in by_split.values():
        train = subsets.get("train", {})
        for path, item in subsets.get("test", {}).items():
            if path in train:
                report(Problem("error", item.origin, f"{path} is also in the training list "
                                                     f"({train[path].origin})"))


def _on_disk(media: Path, source: str) -> set[str]:
    """Relative paths of the videos (or frame folders) under ``media``."""
    found = set()
    for here, _, files in walk(media):  # through symlinked folders, as training reads
        if source == "frames":
            if "img_00001.jpg" in files:
                found.add(here.relative_to(media).as_posix())
        else:
            found.update((here / f).relative_to(media).as_posix() for f in files
                         if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
    return found


def _check_unlisted(lists: list[_List], *, source: str, case: CaseFinder,
                    report: Callable[[Problem], None]) -> None:
    """One warning per media folder holding videos that no list names (but for those a "did you
    mean" already named)."""
    named: dict[Path, set[str]] = {}
    for entry in lists:
        paths = named.setdefault(entry.media, set())
        if entry.split is not None:
            paths.update(item.path for item in entry.split.items)
            paths.update(entry.split.unused)
    for media, paths in named.items():
        if not media.is_dir():
            continue
        if source == "frames":
            paths = {strip_video_extension(path) for path in paths}
        unlisted = sorted(path for path in _on_disk(media, source) - paths
                          if media / path not in case.suggested)
        if unlisted:
            shown = ", ".join(unlisted[:UNLISTED_SHOWN])
            more = ", ..." if len(unlisted) > UNLISTED_SHOWN else ""
            kind = "frame folder(s)" if source == "frames" else "video(s)"
            report(Problem("warning", str(media), f"{len(unlisted)} {kind} that no list names: "
                                                  f"{shown}{more}"))


def _splits_to_check(
    *, root: Path, format: str, annotations: str, report: Callable[[Problem], None]
) -> list[int]:
    """With no splits named: those the annotation folder holds (split 1 when it holds none, so
    that its problems are reported); one warning names the absent ones. A user training on one
    split needs only its lists."""
    if not dataset_format(format).numbered_splits:
        return [1]
    folder, present = present_splits(root=root, format=format, annotations=annotations)
    absent = [n for n in OFFICIAL_SPLITS if n not in present]
    if present and absent:
        numbers = ", ".join(map(str, absent))
        report(Problem("warning", str(folder),
                       f"no lists of split(s) {numbers}: only split(s) "
                       f"{', '.join(map(str, present))} checked (name a split with --splits to "
                       "require its lists)"))
    return present or [1]


class _Features:
    """The feature sets of a features dataset, each media folder's opened once; a folder that
    cannot be opened (missing, no stride) is reported once and its videos are not checked."""

    def __init__(self, root: Path, reading: FeatureReading,
                 report: Callable[[Problem], None]) -> None:
        self.root = root
        self.reading = reading
        self.report = report
        self.sets: dict[Path, FeatureSet | None] = {}

    def open(self, media: Path) -> FeatureSet | None:
        if media not in self.sets:
            try:
                self.sets[media] = self.reading.open(media, top=self.root)
            except DataError as error:
                self.sets[media] = None
                for line in error.problems:
                    self.report(_error(line))
        return self.sets[media]

    def exists(self, media: Path, video: str) -> bool:
        found = self.open(media)
        return found is not None and found.exists(video)


def check_dataset(
    *, root: str | Path, format: str = "ucf101", splits: Sequence[int] | None = (1,),
    annotations: str = "", train_list: str = "", test_list: str = "", source: str = "video",
    flow_root: str = "", full: bool = False, segments: int = 10, flow_length: int = 5,
    report: Callable[[Problem], None], progress: Callable[[int, int], None] | None = None,
    features_root: str = "", features: FeatureReading | None = None,
    temporal_annotations: str | Path | None = None,
) -> int:
    """Check the given splits' train and test sets; returns the number of videos checked.

    ``splits`` are UCF101 / HMDB51 split numbers whose lists must be there; None checks the
    splits the annotation folder holds (:func:`present_splits`) and warns about the others.

    Every problem goes to ``report`` as it is found. ``flow_root`` (relative to root, or
    absolute) also checks each video's flow; ``segments`` and ``flow_length`` are the N and L
    that training samples, for the warning about videos too short for them.
    For ``source="features"`` each video's feature file is looked for under ``features_root``
    (relative to root, or absolute; default root/features), read as ``features`` says (a
    ``DataError`` of the folder, such as a missing stride, is one problem), and its first and
    last steps (every step with ``full``) read. ``progress(done, total)`` is called after each
    video. ``temporal_annotations`` (a file or THUMOS14 folder) is checked too, against the
    lists' classes and videos (:func:`datp.data.temporal_annotations.check_annotation_file`).
    """
    layout = dataset_format(format)
    if segments < 1 or flow_length < 1:
        raise ValueError(f"segments and flow_length must be >= 1, got {segments}, {flow_length}")
    root = Path(root)
    if splits is None:
        splits = _splits_to_check(root=root, format=format, annotations=annotations,
                                  report=report)
    sets = None
    if source == "features":
        sets = _Features(features_folder(root, features_root), features or FeatureReading(),
                         report)
    lists, clean = _read_lists(root=root, format=format, splits=splits, annotations=annotations,
                               train_list=train_list, test_list=test_list, source=source,
                               report=report, features=sets)
    _check_lists(lists, format=format, report=report)
    videos, ordered, openers = _videos_to_check(lists, source=source, sets=sets)
    flow = SourceOpener(kind="flow", base=flow_folder(root, flow_root)) if flow_root else None
    case = CaseFinder()
    absent = _absent_folders(ordered, openers, flow, case=case, report=report)
    for done, ((media, _), item) in enumerate(ordered, start=1):
        for opener in (openers[media], flow):
            if opener is not None and opener.base not in absent:
                for problem in check_source(opener, item, full=full, segments=segments,
                                            flow_length=flow_length, case=case):
                    report(problem)
        if progress is not None:
            progress(done, len(ordered))
    if clean and not layout.per_subset_folders and sets is None:  # features: any layout
        _check_unlisted(lists, source=source, case=case, report=report)
    if temporal_annotations is not None:
        _check_temporal(temporal_annotations, lists,
                        videos=videos if clean else None, report=report)
    return len(ordered)


def _videos_to_check(
    lists: list[_List], *, source: str, sets: _Features | None,
) -> tuple[list[str], list[tuple[tuple[Path, str], VideoItem]], dict[Path, SourceOpener]]:
    """Every listed video once (by its media folder and path): all their paths, those to check
    in order with their items, and an opener per media folder; videos of a features folder
    that cannot be opened (already reported) are left out of the last two."""
    videos: dict[tuple[Path, str], VideoItem] = {}
    for entry in lists:
        if entry.split is not None:
            for item in entry.split.items:
                videos.setdefault((entry.media, item.path), item)
    ordered = sorted(videos.items(), key=lambda pair: (pair[0][1], str(pair[0][0])))
    openers = {media: SourceOpener(kind=source, base=media,
                                   features=None if sets is None else sets.open(media))
               for media, _ in videos}
    unopened = {media for media, opener in openers.items()
                if sets is not None and opener.features is None}
    openers = {media: opener for media, opener in openers.items() if media not in unopened}
    ordered = [entry for entry in ordered if entry[0][0] not in unopened]
    return [path for _, path in videos], ordered, openers


def _check_temporal(annotations: str | Path, lists: list[_List], *,
                    videos: list[str] | None, report: Callable[[Problem], None]) -> None:
    """The temporal annotations against the classes of the first list read and (when every
    list was read cleanly) its videos, and the test videos of the splits checked (those ``datp
    evaluate`` scores, one split at a time)."""
    read = [entry.split for entry in lists if entry.split is not None]
    # Every split checked: a file may annotate one split's test videos alone (each split is
    # evaluated on its own), so it is held against all of their test lists together.
    test_lists = [e for e in lists if e.subset == "test" and e.split is not None]
    tests = (None if videos is None or not test_lists else
             list(dict.fromkeys(item.path for e in test_lists for item in e.split.items)))
    numbers = sorted({e.number for e in test_lists})
    named = (f"the test lists of splits {', '.join(map(str, numbers))}" if len(numbers) > 1
             else f"split {numbers[0]}'s test list" if numbers else "the test list")
    for problem in check_annotation_file(annotations, classes=read[0].classes if read else None,
                                         videos=videos, test_videos=tests, test_list=named):
        report(Problem(problem.severity, problem.where, problem.what))


def _absent_folders(
    ordered: list[tuple[tuple[Path, str], VideoItem]], openers: dict[Path, SourceOpener],
    flow: SourceOpener | None, *, case: CaseFinder, report: Callable[[Problem], None],
) -> set[Path]:
    """The folders none of whose two or more videos exist, each reported once (the folder is
    wrong, or the frames or flow were never extracted) rather than once per video."""
    absent = set()
    for opener in [*openers.values(), *([flow] if flow is not None else [])]:
        items = [item for (media, _), item in ordered
                 if opener is flow or openers[media] is opener]
        if len(items) > 1 and not any(opener.exists(item) for item in items):
            absent.add(opener.base)
            what = opener.stored.what
            first = opener.locate(items[0])
            similar = case.find(first)
            hint = f"; did you mean {similar}?" if similar is not None else ""
            report(Problem("error", str(opener.base),
                           f"none of the {len(items)} {what} the lists name exist here (the "
                           f"first: {first}, named at {items[0].origin}{hint})"))
    return absent
