"""The annotation formats a dataset can come in, as one table: where each keeps its media and
annotations, and how its train and test lists are read.

:data:`FORMATS` (held against ``datp.choices.Format`` by ``tests/test_choices.py``) maps
``data.format`` to a :class:`DatasetFormat`; :func:`read_split` and :func:`media_folder` are the
only code that looks a format up, for training, evaluation and ``datp check`` alike. The readers
themselves are :mod:`datp.data.splits`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datp.choices import Format
from datp.data.sources import SOURCES
from datp.data.splits import (
    Split,
    read_class_folders,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from datp.errors import DataError, InputError

log = logging.getLogger(__name__)

OFFICIAL_SPLITS = (1, 2, 3)
"""The numbered splits of UCF101 and HMDB51."""


@dataclass(frozen=True)
class Lists:
    """What a format's reader is given: one subset of one split of a dataset."""

    root: Path
    annotations: Path
    """The annotation folder (or file): ``root / data.annotations``, or the format's usual one."""
    media: Path
    """The folder the split's paths are relative to (:func:`media_folder`)."""
    subset: str
    """train | test"""
    split: int
    train_list: str
    test_list: str
    source: str
    exists: Callable[[Path, str], bool] | None = None
    """``(media folder, path) -> whether the media are there``, for readers that look for
    them (Kinetics' clip names); None: the path exists under the folder."""


@dataclass(frozen=True)
class DatasetFormat:
    """How one annotation format is laid out and read."""

    read: Callable[[Lists], Split]
    media_folders: Callable[[str, tuple[str, ...]], tuple[str, ...]]
    """``(subset, the source's folders) -> the folders under root that may hold the media``, in
    the order they are looked for."""
    annotations: str = ""
    """The usual annotation folder under root (``data.annotations`` replaces it)."""
    split_files: tuple[str, ...] = ()
    """Glob patterns of a numbered split's list files (``{}`` is the number); none: the format
    has no numbered splits."""
    per_subset_folders: bool = False
    """The media of each subset lie in a folder of its name (``train/``, ``test/``), so the same
    path in both is no leak, and no list names the videos."""

    @property
    def numbered_splits(self) -> bool:
        return bool(self.split_files)


def _kinetics(lists: Lists) -> Split:
    names = {"train": ("train.csv",), "test": ("val.csv", "validate.csv")}[lists.subset]
    folder = lists.annotations
    csv_file = next((folder / n for n in names if (folder / n).is_file()), None)
    if csv_file is None:
        raise DataError(f"{folder}: none of {names} found")
    classes = None
    if lists.subset == "test" and (folder / "train.csv").is_file():
        classes = read_kinetics_classes(folder / "train.csv")
    exists = None
    if lists.exists is not None:
        def exists(candidate: str) -> bool:
            return lists.exists(lists.media, candidate)
    return read_kinetics(csv_file, video_root=lists.media, classes=classes, exists=exists)


def _list_file(lists: Lists) -> Split:
    name = lists.train_list if lists.subset == "train" else lists.test_list
    if not name:
        raise InputError(f"format 'list' needs {lists.subset}_list")
    return read_list_file(lists.root / name)


def _class_folders(lists: Lists) -> Split:
    if lists.media.name != lists.subset:
        log.warning("%s has no %s/ folder: every class folder video is used for %s",
                    lists.media, lists.subset, lists.subset)
    kind = lists.source if lists.source in ("frames", "features") else "videos"
    return read_class_folders(lists.media, kind=kind)


def _kinetics_media(subset: str, source_folders: tuple[str, ...]) -> tuple[str, ...]:
    word = "train" if subset == "train" else "val"
    return (f"videos_{word}", word, *source_folders)


FORMATS: dict[Format, DatasetFormat] = {
    "ucf101": DatasetFormat(
        read=lambda lists: read_ucf101(lists.annotations, split=lists.split,
                                       subset=lists.subset),
        media_folders=lambda subset, folders: (*folders, "UCF-101"),
        annotations="ucfTrainTestlist",
        split_files=("trainlist{:02d}.txt", "testlist{:02d}.txt"),
    ),
    "hmdb51": DatasetFormat(
        read=lambda lists: read_hmdb51(lists.annotations, split=lists.split,
                                       subset=lists.subset),
        media_folders=lambda subset, folders: (*folders, "hmdb51", "hmdb51_org"),
        annotations="testTrainMulti_7030_splits",
        split_files=("*_test_split{}.txt",),
    ),
    "kinetics": DatasetFormat(read=_kinetics, media_folders=_kinetics_media,
                              annotations="annotations"),
    "list": DatasetFormat(read=_list_file, media_folders=lambda subset, folders: folders),
    "folders": DatasetFormat(read=_class_folders, media_folders=lambda subset, folders: folders,
                             per_subset_folders=True),
}
"""data.format -> its layout and reader: UCF101 (``classInd.txt``, ``trainlist0k.txt``,
``testlist0k.txt``), HMDB51 (``<class>_test_split<k>.txt``), Kinetics-400 CSV, TSN / mmaction2
list files, and class folders (``[train/|test/]<class>/<video>``)."""


def dataset_format(name: str) -> DatasetFormat:
    if name not in FORMATS:
        raise ValueError(f"annotation format must be one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def media_folder(*, root: str | Path, format: str, subset: str, source: str = "video") -> Path:
    """The folder a split's paths are relative to: the first of the format's usual folders that
    exists, else ``root`` itself. Found from the layout alone, so that it is right even when the
    annotations cannot be read."""
    root = Path(root)
    layout = dataset_format(format)
    names = layout.media_folders(subset, SOURCES[source].folders)
    media = next((root / name for name in names if (root / name).is_dir()), root)
    if layout.per_subset_folders and (media / subset).is_dir():
        return media / subset
    return media


def read_split(
    *, root: str | Path, format: str, subset: str, split: int = 1, annotations: str = "",
    train_list: str = "", test_list: str = "", source: str = "video",
    media_root: str | Path | None = None, exists: Callable[[Path, str], bool] | None = None,
) -> tuple[Split, Path]:
    """The split's items and the folder their paths are relative to (:func:`media_folder`
    under ``media_root``, by default ``root``: features lie in a folder of their own).
    ``exists(media folder, path)`` tells readers that look for the media whether they are
    there (default: the path exists)."""
    root = Path(root)
    layout = dataset_format(format)
    if subset not in ("train", "test"):
        raise ValueError(f'subset must be "train" or "test", got {subset!r}')
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    media = media_folder(root=root if media_root is None else media_root, format=format,
                         subset=subset, source=source)
    lists = Lists(root=root, annotations=root / (annotations or layout.annotations), media=media,
                  subset=subset, split=split, train_list=train_list, test_list=test_list,
                  source=source, exists=exists)
    return layout.read(lists), media


def present_splits(*, root: Path, format: str, annotations: str = "") -> tuple[Path, list[int]]:
    """The annotation folder of a format with numbered splits, and which of its official splits
    have a list file there (whether the lists are sound is for ``datp check`` to say)."""
    layout = dataset_format(format)
    if not layout.numbered_splits:
        raise ValueError(f"{format} has no numbered splits")
    folder = root / (annotations or layout.annotations)
    present = [n for n in OFFICIAL_SPLITS
               if any(next(folder.glob(p.format(n)), None) for p in layout.split_files)]
    return folder, present


def read_kinetics_classes(csv_file: Path) -> list[str]:
    """Sorted labels of a Kinetics CSV, without looking for the clips."""
    try:
        with open(csv_file, encoding="utf-8-sig", newline="") as handle:
            rows = csv.DictReader(handle)
            return sorted({row["label"].strip() for row in rows if row.get("label")})
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_file}: not valid UTF-8 (byte 0x{error.object[error.start]:02x} "
                        f"at offset {error.start}); datp check names the line") from error
