"""What a detection file holds: the one place that spells its keys, for writing and reading.

``datp evaluate --localization`` and ``datp fuse --localization`` write ``detections.json``,
``datp predict`` writes ``<video>.detections.json``; all in ActivityNet's result format, which
ActivityNet's ``Eval_Detection`` and the weakly supervised localization repositories read as it
is::

    {"version": "VERSION 1.3",
     "results": {"<video id>": [{"label": "<class>", "score": 0.93,
                                 "segment": [start, end]}, ...]},     <- seconds
     "external_data": {"used": false, "details": ""}}

The format is ActivityNet's, so its ``version`` is the layout: this datp writes
:data:`RESULTS_VERSION` and reads any version whose ``results`` are shaped as above (the
reference's code reads no other key). Video ids are as the temporal annotations name them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from datp.errors import InputError
from datp.io import atomic_write_json

RESULTS_VERSION = "VERSION 1.3"
"""The ``version`` ActivityNet's result files carry."""

DETECTIONS = "detections.json"
"""The file name ``datp evaluate --localization`` writes beside ``metrics.json``."""


class Detection(NamedTuple):
    """One detected instance: a class name, a score, and its segment in seconds."""

    label: str
    score: float
    start: float
    end: float


@dataclass
class DetectionFile:
    """A detection file's content, typed. :meth:`to_dict` and :meth:`from_dict` are its layout."""

    results: dict[str, list[Detection]]
    """Video id -> its detections, best first."""
    external_data: dict[str, Any] = field(
        default_factory=lambda: {"used": False, "details": ""})
    version: str = RESULTS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "results": {video: entries(found) for video, found in self.results.items()},
            "external_data": dict(self.external_data),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str | Path) -> DetectionFile:
        """The inverse of :meth:`to_dict`; ``InputError`` naming ``path`` and the place of the
        first problem."""
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise InputError(f"{path}: expected an object whose 'results' maps video ids to "
                             "lists of detections (ActivityNet's result format)")
        results: dict[str, list[Detection]] = {}
        for video, found in data["results"].items():
            if not isinstance(found, list):
                raise InputError(f"{path}: results[{video!r}]: expected a list of detections")
            results[video] = [_detection(item, f"{path}: results[{video!r}][{k}]")
                              for k, item in enumerate(found)]
        external = data.get("external_data")
        return cls(results=results,
                   external_data=external if isinstance(external, dict) else {"used": False,
                                                                              "details": ""},
                   version=str(data.get("version", RESULTS_VERSION)))

    def save(self, path: str | Path) -> None:
        """Write atomically (``datp.io``)."""
        atomic_write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> DetectionFile:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise InputError(f"{path}: result file not found") from error
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: cannot read result file ({error})") from error
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{error.lineno}:{error.colno}: not valid JSON "
                             f"({error.msg})") from error
        return cls.from_dict(data, path=path)


def entries(detections: Sequence[Detection]) -> list[dict[str, Any]]:
    """One video's detections as the file lists them (``datp predict``'s JSON lists them so
    too)."""
    return [{"label": d.label, "score": float(d.score), "segment": [float(d.start), float(d.end)]}
            for d in detections]


def results_json(detections: Mapping[str, Sequence[Detection]], *,
                 external_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """ActivityNet's result format for ``detections`` (video id -> detections)."""
    file = DetectionFile(results={v: list(d) for v, d in detections.items()})
    if external_data is not None:
        file.external_data = dict(external_data)
    return file.to_dict()


def read_results(path: str | Path) -> dict[str, list[Detection]]:
    """A result file (ActivityNet's format) -> video id -> detections, in the file's order."""
    return DetectionFile.load(path).results


def _detection(item: Any, where: str) -> Detection:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with label, score and segment")
    label, score, segment = item.get("label"), item.get("score"), item.get("segment")
    numbers = segment if isinstance(segment, list) and len(segment) == 2 else None
    if not isinstance(label, str) or not label:
        raise InputError(f"{where}.label: expected a class name, got {label!r}")
    for what, value in (("score", score), *((f"segment[{i}]", v) for i, v in
                                             enumerate(numbers or [None, None]))):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            shown = segment if what.startswith("segment") else value
            raise InputError(f"{where}.{what.split('[')[0]}: expected "
                             f"{'[start, end] in seconds' if what != 'score' else 'a number'}, "
                             f"got {shown!r}")
    return Detection(label, float(score), float(numbers[0]), float(numbers[1]))
