"""Temporal annotations, read exactly: where in each video the action instances are.

Two formats, one structure (:class:`TemporalAnnotations`: videos, each with its subset,
duration, instances ``(label, start, end)`` in seconds and ambiguous spans):

- **ActivityNet-style JSON** (ActivityNet 1.3, and the THUMOS14 / ActionFormer / OpenTAD files
  made like it)::

      {"version": "VERSION 1.3", "taxonomy": [...],          <- optional, accepted, not read
       "database": {"<video id>": {"subset": "validation", "duration": 82.73, "fps": 30.0,
                                   "annotations": [{"segment": [9.2, 30.1], "label": "Dunk"}],
                                   ...}}}                     <- other keys (url, ...) ignored

  ``subset``, ``duration`` (seconds, > 0) and ``annotations`` (a list, empty for a video without
  instances) are required, ``fps`` optional. An instance labelled ``Ambiguous`` (some THUMOS14
  conversions keep THUMOS's ambiguous list that way) is read as an ambiguous span.
- **THUMOS14's per-class lists**: a folder of ``<Class>_val.txt`` / ``<Class>_test.txt`` with
  one ``<video> <start> <end>`` line per instance (seconds), and ``Ambiguous_val.txt`` /
  ``Ambiguous_test.txt`` in the same form. The lists give no duration (None here).

:meth:`TemporalAnnotations.save` writes the ActivityNet-style form (``datp synth --instances``);
this module is the one place that spells the keys of either form.

Every problem of the form is collected and raised at once as one :class:`DataError`, one line
each, naming the file and the place (``file:line``, ``file: database['v_x'].annotations[2]``).
What a well-formed file can still get wrong (an instance past the video's end, an unknown
label, ``start >= end``, a video without instances) is listed by :func:`annotation_problems`,
for ``datp check``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from datp.data.splits import _lines
from datp.errors import DataError
from datp.io import atomic_write_json

AMBIGUOUS = "Ambiguous"
"""THUMOS14's name for spans where an action may or may not happen (its ``Ambiguous_*.txt``)."""

THUMOS14_SUBSETS = {"val": "validation", "test": "test"}
"""The suffix of THUMOS14's list files -> the subset its videos are given here."""

DEFAULT_PATH = "annotations/instances.json"
"""Where ``datp synth --instances`` writes them, relative to the dataset root (``datp check``
reads them from there unless told otherwise)."""


@dataclass(frozen=True)
class Instance:
    """One annotated action instance, in seconds from the video's start."""

    label: str
    start: float
    end: float
    where: str = field(default="", compare=False)
    """The file and place it was read from, for messages."""


@dataclass(frozen=True)
class AnnotatedVideo:
    video: str
    """The video's id as the annotations name it (what detections are matched by)."""
    subset: str
    duration: float | None
    """Seconds; None when the format does not give it (THUMOS14's lists)."""
    fps: float | None
    instances: tuple[Instance, ...]
    ambiguous: tuple[tuple[float, float], ...] = ()
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class TemporalAnnotations:
    videos: dict[str, AnnotatedVideo]
    """Video id -> its annotations, in the file's order."""
    source: str
    """The file or folder read."""

    def labels(self) -> list[str]:
        """Every instance label, in order of first appearance."""
        return list(dict.fromkeys(i.label for v in self.videos.values() for i in v.instances))

    def subsets(self) -> list[str]:
        return list(dict.fromkeys(v.subset for v in self.videos.values()))

    def in_subset(self, subset: str) -> TemporalAnnotations:
        """The videos of one subset; a subset no video has is a ``DataError`` naming those
        there are."""
        videos = {k: v for k, v in self.videos.items() if v.subset == subset}
        if not videos:
            raise DataError(f"{self.source}: no video in subset {subset!r}; its subsets: "
                            f"{', '.join(map(repr, self.subsets())) or 'none'}")
        return replace(self, videos=videos)

    def keeping_labels(self, labels: Collection[str]) -> TemporalAnnotations:
        """The same videos with only the instances labelled one of ``labels`` (ambiguous spans
        kept: they have no class)."""
        keep = set(labels)
        return replace(self, videos={
            k: replace(v, instances=tuple(i for i in v.instances if i.label in keep))
            for k, v in self.videos.items()})

    def ground_truth(self) -> dict[str, tuple[Instance, ...]]:
        """Video -> instances: what :func:`datp.detection_map.evaluate_detections` scores
        against."""
        return {k: v.instances for k, v in self.videos.items()}

    def ambiguous_spans(self) -> dict[str, tuple[tuple[float, float], ...]]:
        """Video -> ambiguous spans, for the videos that have some."""
        return {k: v.ambiguous for k, v in self.videos.items() if v.ambiguous}

    def to_dict(self, *, version: str = "datp") -> dict[str, Any]:
        """The ActivityNet-style form (ambiguous spans as instances labelled ``Ambiguous``;
        a video without a duration is written with ``duration`` null, which this reader
        refuses: give THUMOS14's lists their durations before converting)."""
        return {"version": version, "taxonomy": [], "database": {
            video.video: {
                "subset": video.subset, "duration": video.duration,
                **({} if video.fps is None else {"fps": video.fps}),
                "annotations": [{"segment": [i.start, i.end], "label": i.label}
                                for i in video.instances]
                + [{"segment": [s, e], "label": AMBIGUOUS} for s, e in video.ambiguous],
            } for video in self.videos.values()}}

    def save(self, path: str | Path, *, version: str = "datp") -> None:
        """:meth:`to_dict` as JSON, written atomically."""
        atomic_write_json(path, self.to_dict(version=version), indent=1)


def annotations_fingerprint(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of an annotation file, or of a THUMOS14 folder's
    list files (names and contents, in name order): what a localization protocol records."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def read_temporal_annotations(path: str | Path, *, subset: str | None = None
                              ) -> TemporalAnnotations:
    """A ``.json`` file (ActivityNet style) or a folder (THUMOS14's lists), optionally reduced
    to one ``subset`` (for THUMOS14 ``"validation"`` or ``"test"``)."""
    path = Path(path)
    if path.is_dir():
        annotations = read_thumos14(path)
    elif path.suffix.lower() == ".json" or path.is_file():
        annotations = read_activitynet_json(path)
    else:
        raise DataError(f"{path}: temporal annotations not found (an ActivityNet-style .json "
                        "file or a folder of THUMOS14's <Class>_test.txt lists)")
    return annotations if subset is None else annotations.in_subset(subset)


# --- ActivityNet-style JSON ------------------------------------------------------------------


def _no_duplicate_keys(problems: list[str], path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):  # counted only then: a database holds 20,000 keys
            counts = Counter(key for key, _ in pairs)
            for key, count in counts.items():
                if count > 1:
                    problems.append(f"{path}: key {key!r} appears {count} times in one object "
                                    "(JSON keeps only the last)")
        return found
    return hook


def _number(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def read_activitynet_json(path: str | Path) -> TemporalAnnotations:
    """``database -> id -> {subset, duration, fps?, annotations: [{segment, label}]}``."""
    path = Path(path)
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise DataError(f"{path}: annotation file not found") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise DataError(f"{path}: cannot read annotation file ({error})") from error
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys(problems, path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})"
                        ) from error
    if not isinstance(data, dict) or "database" not in data:
        raise DataError(f"{path}: expected a JSON object with a 'database' key (ActivityNet "
                        "style: database -> video id -> {subset, duration, annotations})")
    database = data["database"]
    if not isinstance(database, dict):
        raise DataError(f"{path}: 'database' must map video ids to objects, got "
                        f"{type(database).__name__}")
    videos = {}
    for video, entry in database.items():
        where = f"{path}: database[{video!r}]"
        read = _activitynet_video(video, entry, where, problems)
        if read is not None:
            videos[video] = read
    if problems:
        raise DataError(problems)
    return TemporalAnnotations(videos=videos, source=str(path))


def _activitynet_video(video: str, entry: Any, where: str, problems: list[str]
                       ) -> AnnotatedVideo | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected an object, got {type(entry).__name__}")
        return None
    before = len(problems)
    for key in ("subset", "duration", "annotations"):
        if key not in entry:
            problems.append(f"{where}: no {key!r}")
    subset, duration, fps = entry.get("subset"), entry.get("duration"), entry.get("fps")
    if "subset" in entry and (not isinstance(subset, str) or not subset):
        problems.append(f"{where}.subset: expected a name, got {subset!r}")
    if "duration" in entry and not ((d := _number(duration)) is not None and d > 0):
        problems.append(f"{where}.duration: expected seconds > 0, got {duration!r}")
    if fps is not None and not ((f := _number(fps)) is not None and f > 0):
        problems.append(f"{where}.fps: expected frames per second > 0, got {fps!r}")
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        problems.append(f"{where}.annotations: expected a list, got {type(annotations).__name__}")
        annotations = []
    instances, ambiguous = [], []
    for k, annotation in enumerate(annotations):
        place = f"{where}.annotations[{k}]"
        if not isinstance(annotation, dict):
            problems.append(f"{place}: expected an object with 'segment' and 'label', got "
                            f"{type(annotation).__name__}")
            continue
        segment, label = annotation.get("segment"), annotation.get("label")
        bounds = ([_number(x) for x in segment]
                  if isinstance(segment, list) and len(segment) == 2 else None)
        if bounds is None or None in bounds:
            problems.append(f"{place}.segment: expected [start, end] in seconds, got {segment!r}")
        if not isinstance(label, str) or not label.strip():
            problems.append(f"{place}.label: expected a class name, got {label!r}")
        if bounds is None or None in bounds or not isinstance(label, str) or not label.strip():
            continue
        if label == AMBIGUOUS:
            ambiguous.append((bounds[0], bounds[1]))
        else:
            instances.append(Instance(label, bounds[0], bounds[1], place))
    if len(problems) > before:
        return None
    return AnnotatedVideo(video=video, subset=subset, duration=float(duration),
                          fps=None if fps is None else float(fps), instances=tuple(instances),
                          ambiguous=tuple(ambiguous), where=where)


# --- THUMOS14's lists ------------------------------------------------------------------------


def _thumos_lines(path: Path, problems: list[str]) -> Iterable[tuple[str, float, float, str]]:
    """(video, start, end, "file:line") of each well-formed line; bad ones go to problems."""
    for number, line in _lines(path, problems):
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 3:
            problems.append(f"{where}: expected '<video> <start> <end>', got {line!r}")
            continue
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            problems.append(f"{where}: start and end must be seconds, got {line!r}")
            continue
        if not (math.isfinite(start) and math.isfinite(end)):
            problems.append(f"{where}: start and end must be finite, got {line!r}")
            continue
        yield parts[0], start, end, where


def read_thumos14(folder: str | Path) -> TemporalAnnotations:
    """THUMOS14's ``<Class>_val.txt`` / ``<Class>_test.txt`` lists (and ``Ambiguous_*.txt``);
    classes in sorted order, videos in order of first appearance."""
    folder = Path(folder)
    problems: list[str] = []
    lists = sorted(p for p in folder.glob("*_*.txt")
                   if p.stem.rpartition("_")[2] in THUMOS14_SUBSETS)
    if not any(p.stem.rpartition("_")[0] != AMBIGUOUS for p in lists):
        raise DataError(f"{folder}: no THUMOS14 list (<Class>_val.txt or <Class>_test.txt)")
    found: dict[str, dict[str, Any]] = {}  # video -> subset, instances, ambiguous, where
    for path in lists:
        label, _, suffix = path.stem.rpartition("_")
        subset = THUMOS14_SUBSETS[suffix]
        for video, start, end, where in _thumos_lines(path, problems):
            entry = found.setdefault(video, {"subset": subset, "instances": [], "ambiguous": [],
                                             "where": where})
            if entry["subset"] != subset:
                problems.append(f"{where}: video {video} is also in the {entry['subset']} lists "
                                f"({entry['where']})")
                continue
            if label == AMBIGUOUS:
                entry["ambiguous"].append((start, end))
            else:
                entry["instances"].append(Instance(label, start, end, where))
    if problems:
        raise DataError(problems)
    videos = {video: AnnotatedVideo(video=video, subset=e["subset"], duration=None, fps=None,
                                    instances=tuple(e["instances"]),
                                    ambiguous=tuple(e["ambiguous"]), where=e["where"])
              for video, e in found.items()}
    return TemporalAnnotations(videos=videos, source=str(folder))


# --- dataset videos and annotated ones ---------------------------------------------------


def _without_extension(video: str) -> str:
    name = Path(video).name
    return video[: len(video) - len(name)] + name.rsplit(".", 1)[0] if "." in name else video


VIDEO_KEYS: tuple[Callable[[str], str], ...] = (
    lambda video: video, _without_extension, lambda video: Path(_without_extension(video)).name)
"""How a dataset's video id meets an annotated one, tried in order: the same id, the same
without the extension, the same file stem (THUMOS14's lists name ``video_test_0000004``, a
dataset reads ``video_test_0000004.mp4``)."""


def match_videos(videos: Sequence[str], annotated: Iterable[str]) -> dict[str, str]:
    """Dataset video id -> annotated id, by the first of :data:`VIDEO_KEYS` that meets one;
    each annotated id matched once."""
    annotated = list(annotated)
    tables = [{key(a): a for a in annotated} for key in VIDEO_KEYS]
    matched: dict[str, str] = {}
    taken: set[str] = set()
    for video in videos:
        for table, key in zip(tables, VIDEO_KEYS, strict=True):
            found = table.get(key(video))
            if found is not None and found not in taken:
                matched[video] = found
                taken.add(found)
                break
    return matched


# --- what datp check reports -----------------------------------------------------------------


class AnnotationProblem(NamedTuple):
    severity: Literal["error", "warning"]
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.what}"


def annotation_problems(
    annotations: TemporalAnnotations, *, classes: Sequence[str] | None = None
) -> list[AnnotationProblem]:
    """What a well-formed file still gets wrong, in file order: an instance (or ambiguous span)
    with ``start >= end``, starting before 0 or ending after the video's duration (errors); a
    label not in ``classes`` (an error, when classes are given); a video without instances (a
    warning: ActivityNet's test videos have none by design)."""
    known: Mapping[str, None] | None = None if classes is None else dict.fromkeys(classes)
    problems: list[AnnotationProblem] = []
    hints: dict[str, str] = {}
    for video in annotations.videos.values():
        spans = [(i.where or video.where, f"instance {i.label} {i.start:g}-{i.end:g} s", i.start,
                  i.end) for i in video.instances]
        spans += [(video.where, f"ambiguous span {s:g}-{e:g} s", s, e)
                  for s, e in video.ambiguous]
        for where, what, start, end in spans:
            if start >= end:
                problems.append(AnnotationProblem("error", where, f"{what}: start >= end"))
            if start < 0:
                problems.append(AnnotationProblem("error", where, f"{what} starts before 0"))
            if video.duration is not None and end > video.duration:
                problems.append(AnnotationProblem(
                    "error", where, f"{what} ends after the video's {video.duration:g} s"))
        if known is not None:
            for instance in video.instances:
                if instance.label not in known:
                    if instance.label not in hints:  # one search per label, not per instance
                        close = difflib.get_close_matches(instance.label, list(known), n=1)
                        hints[instance.label] = f" (did you mean {close[0]!r}?)" if close else ""
                    hint = hints[instance.label]
                    problems.append(AnnotationProblem(
                        "error", instance.where or video.where,
                        f"label {instance.label!r} is not one of the {len(known)} classes{hint}"))
        if not video.instances:
            problems.append(AnnotationProblem(
                "warning", video.where, f"video {video.video} has no annotated instance"))
    return problems


def labels_outside(annotations: TemporalAnnotations, classes: Collection[str]
                   ) -> dict[str, int]:
    """The instance labels that are none of ``classes`` -> how many instances carry each, in
    order of first appearance."""
    known = set(classes)
    outside: dict[str, int] = {}
    for video in annotations.videos.values():
        for instance in video.instances:
            if instance.label not in known:
                outside[instance.label] = outside.get(instance.label, 0) + 1
    return outside


def classes_without_instances(annotations: TemporalAnnotations, classes: Sequence[str],
                              videos: Iterable[str]) -> list[str]:
    """The ``classes`` that no instance of the annotated ``videos`` (annotated ids) carries,
    in their order: the classes an mAP over those videos leaves out (its classes are the
    ground truth's)."""
    carried = {i.label for video in videos for i in annotations.videos[video].instances}
    return [name for name in classes if name not in carried]


def no_video_problem(annotations: TemporalAnnotations, videos: Sequence[str], *,
                     what: str = "{} evaluated videos") -> str | None:
    """Why ``annotations`` cannot score ``videos`` (dataset ids; ``what`` names them, ``{}``
    their count): they annotate no video, or none of these (:func:`match_videos`); None when
    they name at least one. The words evaluate and check both refuse such a file with."""
    if not annotations.videos:
        holder = "lists are" if Path(annotations.source).is_dir() else "database is"
        return f"annotates no video (its {holder} empty)"
    if match_videos(videos, annotations.videos):
        return None
    first = next(iter(annotations.videos))
    example = f" (e.g. {videos[0]!r})" if videos else ""
    return (f"names none of the {what.format(len(videos))}{example}; it annotates "
            f"{len(annotations.videos)} others (e.g. {first!r}, in subset(s) "
            f"{', '.join(map(repr, annotations.subsets()))})")


def check_annotation_file(
    path: str | Path, *, classes: Sequence[str] | None, videos: Sequence[str] | None,
    test_videos: Sequence[str] | None = None, test_list: str = "the test list",
) -> list[AnnotationProblem]:
    """What ``datp check`` reports of a temporal annotation file: every problem of its form
    (errors), :func:`annotation_problems` against ``classes``, a file that annotates no video,
    and, given the ``videos`` a dataset's lists name, one warning for the annotated videos none
    of them is (matched by :func:`match_videos`). Given the ``test_videos`` (those an
    evaluation scores, of ``test_list``), naming none of them is an error and ``classes``
    without an instance in them are one warning, as ``datp evaluate --localization`` has
    them."""
    try:
        annotations = read_temporal_annotations(path)
    except DataError as error:
        return [AnnotationProblem("error", *_split_problem(line, str(path)))
                for line in error.problems]
    problems = annotation_problems(annotations, classes=classes)
    problems += _test_problems(annotations, str(path), classes=classes,
                               test_videos=test_videos, test_list=test_list)
    if videos is not None and annotations.videos:
        matched = set(match_videos(videos, annotations.videos).values())
        unknown = [v for v in annotations.videos if v not in matched]
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            problems.append(AnnotationProblem(
                "warning", str(path), f"{len(unknown)} annotated video(s) that no list names: "
                                      f"{shown}"))
    return problems


def _split_problem(line: str, path: str) -> tuple[str, str]:
    where, sep, what = line.partition(": ")
    return (where, what) if sep else (path, line)


def _test_problems(annotations: TemporalAnnotations, path: str, *,
                   classes: Sequence[str] | None, test_videos: Sequence[str] | None,
                   test_list: str) -> list[AnnotationProblem]:
    """A file that annotates no video (or none of ``test_videos``), an error; the ``classes``
    without an instance in the test videos it annotates, one warning."""
    unusable = no_video_problem(annotations, test_videos or [],
                                what=f"{{}} videos of {test_list}")
    if unusable is not None and (test_videos is not None or not annotations.videos):
        return [AnnotationProblem("error", path, unusable)]
    if test_videos is None or not classes:
        return []
    matched = list(match_videos(test_videos, annotations.videos).values())
    missing = classes_without_instances(annotations, classes, matched)
    if not missing:
        return []
    return [AnnotationProblem("warning", path, (
        f"{len(missing)} of the {len(classes)} classes have no instance in the {len(matched)} "
        f"videos of {test_list} it annotates (an evaluation's mAP leaves them out): "
        f"{', '.join(missing)}"))]
