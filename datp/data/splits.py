"""Annotation readers, exact to the official formats. Each returns a :class:`Split`.

- UCF101: ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0k.txt`` ("Class/v_..._g08_c01.avi 1",
  1-based labels) and ``testlist0k.txt`` (path only; the label is the class folder's).
- HMDB51: ``<class>_test_split<k>.txt`` with lines "<video name> <0|1|2>" (1 train, 2 test,
  0 unused); classes in alphabetical order, as mmaction2 numbers them.
- Kinetics-400: CSV ``label,youtube_id,time_start,time_end,split``; files
  ``<youtube_id>_<start:06d>_<end:06d>.mp4`` under a class folder (spaces kept or replaced by
  underscores) or in one flat folder.
- TSN / mmaction2 list files: ``path num_frames label`` (frame folders) or ``path label`` (videos),
  0-based labels.
- A folder per class: ``root/<class>/<video file or frame folder>``, classes sorted by name.

Every reader checks every line and raises one :class:`DataError` listing all the problems found,
each as ``file:line: problem``.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datp.data.video import VIDEO_EXTENSIONS
from datp.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoItem:
    path: str
    """Path relative to the dataset's video (or frame) root, with '/' separators."""
    label: int
    """0-based class index."""
    num_frames: int | None = None
    """Frame count given by the annotation (TSN frame lists), else None."""
    origin: str = ""
    """Where the item was read: "file:line", for error messages."""


@dataclass
class Split:
    items: list[VideoItem]
    classes: list[str]
    annotation: str = ""
    """The annotation file(s) the split came from."""
    problems: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    """Paths the annotation names but gives to no subset (HMDB51's code 0)."""


def _lines(path: Path, problems: list[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for non-empty lines; CRLF and a BOM tolerated.

    A line that is not valid UTF-8 is added to ``problems`` with its column and skipped, so that
    the rest of the file is still read.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise DataError(f"{path}: annotation file not found") from error
    except OSError as error:
        raise DataError(f"{path}: cannot read annotation file ({error})") from error
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: UTF-16 text (it starts with a UTF-16 byte order mark); save it "
                        "as UTF-8")
    for number, raw in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8")) + 1
            problems.append(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} "
                            f"at column {column})")
            continue
        if line:
            yield number, line


def _raise_if(problems: list[str], partial: Split | None = None) -> None:
    if problems:
        raise DataError(problems, partial=partial)


def _check_subset(subset: str) -> None:
    if subset not in ("train", "test"):
        raise ValueError(f'subset must be "train" or "test", got {subset!r}')


# --- UCF101 ---------------------------------------------------------------------------------------

def read_ucf101_classes(class_file: str | Path) -> list[str]:
    """``classInd.txt``: "1 ApplyEyeMakeup" per line, indices 1..C in order."""
    class_file = Path(class_file)
    problems: list[str] = []
    entries: list[tuple[int, int, str]] = []  # (line number, index, name)
    for number, line in _lines(class_file, problems):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            problems.append(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
            continue
        entries.append((number, int(parts[0]), parts[1]))
    # The indices must count 1, 2, 3, ...: report the first that does not, and only when every
    # line was read (after an unreadable line every index would look off by one).
    if not problems:
        for position, (number, index, _) in enumerate(entries, start=1):
            if index != position:
                problems.append(f"{class_file}:{number}: class index {index}, expected {position}")
                break
    classes = [name for _, _, name in entries]
    if not classes and not problems:
        problems.append(f"{class_file}: no classes")
    _raise_if(problems)
    return classes


def read_ucf101(annotation_dir: str | Path, *, split: int = 1, subset: str = "train") -> Split:
    """UCF101's ``ucfTrainTestlist`` folder: split 1, 2 or 3, subset "train" or "test"."""
    _check_subset(subset)
    annotation_dir = Path(annotation_dir)
    classes = read_ucf101_classes(annotation_dir / "classInd.txt")
    index = {name: i for i, name in enumerate(classes)}
    list_file = annotation_dir / f"{subset}list{split:02d}.txt"
    items: list[VideoItem] = []
    problems: list[str] = []
    for number, line in _lines(list_file, problems):
        where = f"{list_file}:{number}"
        parts = line.split()
        expected = 2 if subset == "train" else 1
        if len(parts) != expected:
            form = "'<Class>/<video> <label>'" if subset == "train" else "'<Class>/<video>'"
            problems.append(f"{where}: expected {form}, got {line!r}")
            continue
        path = parts[0].replace("\\", "/")
        class_name = path.split("/")[0] if "/" in path else None
        if class_name not in index:
            problems.append(f"{where}: unknown class {class_name!r} (not in classInd.txt)"
                            f"{_similar_class(class_name, classes)}")
            continue
        label = index[class_name]
        if subset == "train":
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                problems.append(f"{where}: label {parts[1]!r} not in 1..{len(classes)}")
                continue
            if int(parts[1]) - 1 != label:
                problems.append(
                    f"{where}: label {parts[1]} is {classes[int(parts[1]) - 1]!r} but the video "
                    f"is in folder {class_name!r}"
                )
                continue
        items.append(VideoItem(path=path, label=label, origin=where))
    split_data = Split(items=items, classes=classes, annotation=str(list_file))
    _raise_if(problems, split_data)
    return split_data


def _similar_class(name: str | None, classes: list[str]) -> str:
    """"; did you mean ...?" with a class that differs only in letter case, or else a close one."""
    if name is None:
        return ""
    same = [c for c in classes if c.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, classes, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- HMDB51 ---------------------------------------------------------------------------------------

_HMDB_NAME = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d)\.txt$")


def read_hmdb51(split_dir: str | Path, *, split: int = 1, subset: str = "train") -> Split:
    """HMDB51's ``testTrainMulti_7030_splits`` folder: ``<class>_test_split<k>.txt`` files."""
    _check_subset(subset)
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: HMDB51 split folder not found")
    files = {}
    for path in split_dir.iterdir():
        match = _HMDB_NAME.match(path.name)
        if match and int(match["split"]) == split:
            files[match["cls"]] = path
    if not files:
        raise DataError(f"{split_dir}: no '<class>_test_split{split}.txt' files")
    classes = sorted(files)
    wanted = "1" if subset == "train" else "2"
    items: list[VideoItem] = []
    unused: list[str] = []
    problems: list[str] = []
    for label, class_name in enumerate(classes):
        list_file = files[class_name]
        for number, line in _lines(list_file, problems):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                problems.append(
                    f"{list_file}:{number}: expected '<video name> <0|1|2>', got {line!r}"
                )
                continue
            path = f"{class_name}/{parts[0]}"
            if parts[1] == wanted:
                items.append(VideoItem(path=path, label=label, origin=f"{list_file}:{number}"))
            elif parts[1] == "0":
                unused.append(path)
    split_data = Split(items=items, classes=classes, annotation=str(split_dir), unused=unused)
    _raise_if(problems, split_data)
    return split_data


# --- Kinetics -------------------------------------------------------------------------------------

def kinetics_file_name(youtube_id: str, start: int, end: int, extension: str = ".mp4") -> str:
    """The usual clip name: ``<youtube_id>_<start:06d>_<end:06d>.mp4``."""
    return f"{youtube_id}_{start:06d}_{end:06d}{extension}"


def _kinetics_records(csv_file: Path, problems: list[str]) -> list[tuple[str, str, str, int, int]]:
    """``(where, label, youtube_id, start, end)`` of each row of a Kinetics CSV; a bad row is a
    line of ``problems``, a file without the columns a ``DataError``."""
    numbered = list(_lines(csv_file, problems))
    if not numbered:
        raise DataError(problems or [f"{csv_file}: empty CSV"])
    numbers = [number for number, _ in numbered]
    rows = list(csv.reader(line for _, line in numbered))
    header = [name.strip() for name in rows[0]]
    needed = ("label", "youtube_id", "time_start", "time_end")
    missing_columns = [name for name in needed if name not in header]
    if missing_columns:
        raise DataError([*problems, f"{csv_file}:{numbers[0]}: missing columns "
                                    f"{missing_columns} in header {header}"])
    column = {name: header.index(name) for name in needed}
    records = []
    for number, row in zip(numbers[1:], rows[1:], strict=True):
        if all(not cell.strip() for cell in row):
            continue
        where = f"{csv_file}:{number}"
        if len(row) < len(header):
            problems.append(f"{where}: expected {len(header)} fields, got {len(row)}")
            continue
        try:
            start = int(float(row[column["time_start"]]))
            end = int(float(row[column["time_end"]]))
        except ValueError:
            problems.append(f"{where}: time_start / time_end are not numbers: {row}")
            continue
        records.append((where, row[column["label"]].strip(), row[column["youtube_id"]].strip(),
                        start, end))
    return records


def read_kinetics(
    csv_file: str | Path, *, video_root: str | Path, classes: list[str] | None = None,
    extension: str = ".mp4", exists: Callable[[str], bool] | None = None,
) -> Split:
    """A Kinetics CSV (``label,youtube_id,time_start,time_end,split``) and its clips.

    ``classes`` fixes the label order (pass the training split's); by default the sorted labels
    of this file. The clip is looked up as ``<label>/<name>``, ``<label with _>/<name>`` or
    ``<name>`` under ``video_root``; the first that exists is used (``exists(candidate)``, by
    default whether ``video_root / candidate`` exists: features ask their set), and a clip found
    in none is a problem of the split.
    """
    csv_file = Path(csv_file)
    video_root = Path(video_root)
    if exists is None:
        def exists(candidate: str) -> bool:
            return (video_root / candidate).exists()
    problems: list[str] = []
    records = _kinetics_records(csv_file, problems)
    if classes is None:
        classes = sorted({label for _, label, *_ in records})
    index = {name: i for i, name in enumerate(classes)}
    items: list[VideoItem] = []
    for where, label, youtube_id, start, end in records:
        if label not in index:
            problems.append(f"{where}: unknown class {label!r}")
            continue
        name = kinetics_file_name(youtube_id, start, end, extension)
        candidates = [f"{label}/{name}", f"{label.replace(' ', '_')}/{name}", name]
        found = next((c for c in candidates if exists(c)), None)
        if found is None:
            problems.append(f"{where}: clip {name} not found under {video_root} "
                            f"(looked in {label!r}/, {label.replace(' ', '_')!r}/ and flat)")
            continue
        items.append(VideoItem(path=found, label=index[label], origin=where))
    split_data = Split(items=items, classes=classes, annotation=str(csv_file))
    _raise_if(problems, split_data)
    return split_data


# --- TSN / mmaction2 list files -------------------------------------------------------------------

def read_list_file(list_file: str | Path, *, classes: list[str] | None = None) -> Split:
    """``path num_frames label`` (frame folders) or ``path label`` (videos), 0-based labels.

    The form is taken from the first line and must hold for every line. Paths may contain
    spaces (the last fields are split off). ``classes`` names the labels; by default "0".."C-1".
    """
    list_file = Path(list_file)
    items: list[VideoItem] = []
    problems: list[str] = []
    fields = None
    for number, line in _lines(list_file, problems):
        where = f"{list_file}:{number}"
        parts = line.rsplit(maxsplit=2)
        if fields is None:
            fields = 3 if len(parts) == 3 and parts[1].isdigit() else 2
        parts = line.rsplit(maxsplit=fields - 1)
        if len(parts) != fields or not all(p.isdigit() for p in parts[1:]):
            form = "'<path> <num_frames> <label>'" if fields == 3 else "'<path> <label>'"
            problems.append(f"{where}: expected {form}, got {line!r}")
            continue
        label = int(parts[-1])
        if classes is not None and label >= len(classes):
            problems.append(f"{where}: label {label} but only {len(classes)} classes")
            continue
        num_frames = int(parts[1]) if fields == 3 else None
        if num_frames == 0:
            problems.append(f"{where}: zero frames")
            continue
        items.append(VideoItem(path=parts[0], label=label, num_frames=num_frames, origin=where))
    if not items and not problems:
        problems.append(f"{list_file}: no entries")
    if classes is None:
        classes = [str(i) for i in range(max((item.label for item in items), default=-1) + 1)]
    split_data = Split(items=items, classes=classes, annotation=str(list_file))
    _raise_if(problems, split_data)
    return split_data


# --- a folder per class ---------------------------------------------------------------------------

def read_class_folders(root: str | Path, *, kind: str = "videos") -> Split:
    """``root/<class>/<video>`` (kind "videos"), ``root/<class>/<frame folder>`` ("frames") or
    ``root/<class>/<video>.npy`` ("features": the item is the path without ``.npy``)."""
    if kind not in ("videos", "frames", "features"):
        raise ValueError(f'kind must be "videos", "frames" or "features", got {kind!r}')
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders")
    items = []
    for label, class_name in enumerate(classes):
        for entry in sorted((root / class_name).iterdir()):
            name = entry.name
            if kind == "videos":
                wanted = entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS
            elif kind == "features":
                wanted, name = entry.is_file() and entry.suffix == ".npy", entry.stem
            else:
                wanted = entry.is_dir()
            if wanted:
                items.append(VideoItem(path=f"{class_name}/{name}", label=label,
                                       origin=str(entry)))
    if not items:
        raise DataError(f"{root}: class folders hold no {kind}")
    return Split(items=items, classes=classes, annotation=str(root))


def missing_files(split: Split, root: str | Path, *, folders: bool = False) -> list[str]:
    """One problem line per item whose file (or frame folder) does not exist under ``root``."""
    root = Path(root)
    problems = []
    for item in split.items:
        path = root / item.path
        exists = path.is_dir() if folders else path.is_file()
        if not exists:
            what = "frame folder" if folders else "file"
            problems.append(f"{item.origin}: {what} {path} does not exist")
    return problems


def keep_existing(split: Split, problem_of: Callable[[VideoItem], str | None], *,
                  skip_bad_videos: bool, none_left: str) -> tuple[list[VideoItem], list[str]]:
    """The items of ``split`` whose media exist (``problem_of(item)`` is None), and each other
    one's problem line; a ``DataError`` listing those unless ``skip_bad_videos`` (then each is
    logged, and ``split.annotation: none_left`` is the error when no item is left)."""
    items, problems = [], []
    for item in split.items:
        problem = problem_of(item)
        if problem is None:
            items.append(item)
        else:
            problems.append(problem)
    if problems:
        if not skip_bad_videos:
            raise DataError(problems)
        for problem in problems:
            log.warning("skipping: %s", problem)
        if not items:
            raise DataError([f"{split.annotation}: {none_left}", *problems])
    return items, problems


def split_fingerprint(dataset: Any) -> str | None:
    """sha256 of a split's ``path<TAB>label`` lines (the training split's for resuming, the
    test split's in an evaluation's protocol), or None for a dataset that does not list its
    items (an in-memory dataset)."""
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda item: item.path):
        digest.update(f"{item.path}\t{item.label}\n".encode())
    return f"{len(items)}:{digest.hexdigest()}"


def repeated_items(items: Sequence[VideoItem]) -> list[tuple[VideoItem, VideoItem]]:
    """Lines of a list that name a video an earlier line names: ``(item, earlier)`` pairs, in
    list order (``datp check`` reports each; training warns once)."""
    first: dict[str, VideoItem] = {}
    repeats = []
    for item in items:
        earlier = first.setdefault(item.path, item)
        if earlier is not item:
            repeats.append((item, earlier))
    return repeats


def warn_repeats(split: Split) -> None:
    """One logged warning when lines of ``split``'s list name a video an earlier line names."""
    annotation, repeats = split.annotation, repeated_items(split.items)
    if not repeats:
        return
    relabelled = sum(item.label != earlier.label for item, earlier in repeats)
    item, earlier = repeats[0]
    log.warning(
        "%s: %d line(s) name a video listed before%s, e.g. %s (%s, first at %s); each line "
        "is a sample, so these videos weigh more (datp check lists them all)",
        annotation, len(repeats),
        f", {relabelled} with another label" if relabelled else "", item.path, item.origin,
        earlier.origin,
    )
