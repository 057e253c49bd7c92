"""Find every problem of a dataset in one pass: annotations, missing files, unreadable videos.

Problems are strings "where: what" (file, or file:line). Nothing stops at the first one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from datp.data.dataset import FORMATS, SourceOpener, read_split
from datp.data.errors import DataError
from datp.data.splits import Split, VideoItem

log = logging.getLogger(__name__)


def check_source(opener: SourceOpener, item: VideoItem, *, full: bool = False) -> list[str]:
    """Problems of one item's source: missing, unreadable, empty, truncated, missing frames.

    Opens it (which counts the frames exactly), then decodes the first and the last frame, or
    every frame with ``full``.
    """
    path = opener.locate(item)
    if not opener.exists(item):
        what = "file" if opener.kind == "video" else "folder"
        return [f"{path}: {what} does not exist (named at {item.origin})"]
    try:
        source = opener(item)
    except DataError as error:
        return error.problems
    try:
        count = source.num_frames
        declared = getattr(source, "declared_frames", None)
        if declared and declared > count:
            return [f"{path}: truncated: the container declares {declared} frames, "
                    f"only {count} are there"]
        indices = list(range(count)) if full else sorted({0, count - 1})
        if opener.kind == "flow":
            source.read_flow(indices, 1)
        else:
            source.read(indices)
    except DataError as error:
        return error.problems
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return []


def check_dataset(
    *, root: str | Path, format: str = "ucf101", splits: Sequence[int] = (1,),
    annotations: str = "", train_list: str = "", test_list: str = "", source: str = "video",
    flow_root: str = "", full: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], int]:
    """(every problem found, number of videos checked) for the given splits' train and test sets.

    ``flow_root`` (relative to root, or absolute) also checks each video's flow folder.
    ``progress(done, total)`` is called after each video.
    """
    if format not in FORMATS:
        raise ValueError(f"annotation format must be one of {FORMATS}, got {format!r}")
    root = Path(root)
    problems: list[str] = []
    items: dict[str, VideoItem] = {}
    media: Path | None = None
    split_numbers = splits if format in ("ucf101", "hmdb51") else (1,)
    for number in split_numbers:
        for subset in ("train", "test"):
            split_data: Split | None
            try:
                split_data, media = read_split(
                    root=root, format=format, subset=subset, split=number,
                    annotations=annotations, train_list=train_list, test_list=test_list,
                    source=source,
                )
            except DataError as error:
                problems.extend(p for p in error.problems if p not in problems)
                split_data = error.partial if isinstance(error.partial, Split) else None
            if split_data is not None:
                for item in split_data.items:
                    items.setdefault(item.path, item)
    if media is None:  # no annotation could be read: still check the usual media folder
        media = root / ("videos" if source == "video" else "rawframes")
    openers = [SourceOpener(kind=source, base=media)]
    if flow_root:
        openers.append(SourceOpener(kind="flow", base=root / flow_root))
    ordered = sorted(items.values(), key=lambda item: item.path)
    for done, item in enumerate(ordered, start=1):
        for opener in openers:
            problems.extend(check_source(opener, item, full=full))
        if progress is not None:
            progress(done, len(ordered))
    return problems, len(ordered)
