"""The files of ``datp predict``: one video's JSON record and figure; for many videos, the folder
or list file that names them and ``predictions.csv``, one row per video, which a run that was
interrupted resumes.

Dimension key: N segments, C classes.

Batch mode (a folder, or a list file ``.txt`` / ``.lst`` / ``.list``) predicts one video at a time
and flushes each row as soon as it exists, so an interruption loses at most the current video; a
rerun into the same folder keeps the rows of videos already predicted and skips them. A video
that cannot be read gets a row with status ``error`` and the others go on.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from datp.detection_file import DetectionFile
from datp.engine.predict import Prediction, predict_video
from datp.engine.streams import Stream
from datp.engine.visualize import plot_prediction
from datp.errors import DataError, InputError, UserError
from datp.flow.backends import FlowBackend
from datp.flow.extract import find_videos
from datp.flow.on_demand import Progress
from datp.io import atomic_write_json

LIST_SUFFIXES = (".txt", ".lst", ".list")
CSV_NAME = "predictions.csv"


def write_prediction(prediction: Prediction, out: Path) -> tuple[Path, Path]:
    """``out/<video>.json`` (:meth:`Prediction.to_dict`), ``out/<video>.detections.json`` (its
    detections in ActivityNet's result format, the video named by its stem) and
    ``out/<video>.png`` (the sampled frames beside each stream's temporal weights, the
    detections drawn above them), named by the video's stem; returns the JSON's and the
    figure's paths."""
    stem = Path(prediction.video).stem
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    record = prediction.to_dict()
    _claim_prediction(json_path, record)
    atomic_write_json(json_path, record)
    DetectionFile(results={stem: prediction.detections}).save(detections_path(out, stem))
    plot_prediction(record, prediction.frames, png_path)
    return json_path, png_path


def _made_by(record: dict) -> tuple:
    """Which prediction a JSON record is: the video, and each stream's checkpoint and views."""
    return (str(Path(record.get("video", "")).resolve()),
            [(s.get("checkpoint"), s.get("segments"), s.get("crops"))
             for s in record.get("streams", [])])


def _claim_prediction(path: Path, record: dict) -> None:
    """Refuse, in one line, replacing the prediction of another video or made by other
    checkpoints or views (two videos named alike, another model); the same prediction again
    rewrites its own file."""
    if not path.is_file():
        return
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    if isinstance(earlier, dict) and _made_by(earlier) == _made_by(record):
        return
    raise InputError(f"{path} holds another prediction (of {earlier.get('video', 'a video')} "
                     "or by other checkpoints or views); choose another --out, or move it away")


def detections_path(out: Path, stem: str) -> Path:
    """Where :func:`write_prediction` writes a video's detections."""
    return out / f"{stem}.detections.json"


# --- many videos ----------------------------------------------------------------------------------


def is_batch(target: Path) -> bool:
    """Whether ``target`` names many videos: a folder, or a list file."""
    return target.is_dir() or target.suffix.lower() in LIST_SUFFIXES


def listed_videos(target: Path) -> tuple[list[Path], int]:
    """The videos of a folder (searched recursively), or the paths of a list file (relative to
    it; ``#`` starts a comment line), each distinct video once, in the order first listed; and
    how many lines named a video listed before. Raises ``DataError`` for a list file that is not
    UTF-8 and when there is no video."""
    try:
        videos, repeats = _listed(target)
    except UnicodeDecodeError as error:
        raise DataError(f"{target}: the list file is not valid UTF-8 ({error.reason})") from error
    if not videos:
        raise DataError(f"{target}: no videos to predict")
    return videos, repeats


def _listed(target: Path) -> tuple[list[Path], int]:
    if target.is_dir():
        return [target / v for v in find_videos(target)], 0
    videos: dict[str, Path] = {}
    repeats = 0
    for line in target.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            path = path if path.is_absolute() else target.parent / path
            key = os.path.realpath(path)  # a/./b.mp4, a/x/../b.mp4 and a link to it: one video
            repeats += key in videos
            videos.setdefault(key, path)
    return list(videos.values()), repeats


def csv_header(top_k: int) -> list[str]:
    return ["video", "status", "top1", "top1_probability", f"top{top_k}", "key_action_s",
            "key_action_frames", "warning", "error"]


@dataclass(frozen=True)
class Batch:
    """The videos of one batch run and what an earlier, interrupted run into the same folder
    finished."""

    csv: Path
    videos: list[Path]
    """Each distinct video once."""
    repeats: int
    """Lines of the list file that named a video listed before."""
    kept: list[list[str]]
    """The earlier run's rows of videos it predicted, written again first."""
    finished: set[str]
    """The videos of ``kept``."""

    @property
    def todo(self) -> list[Path]:
        return [video for video in self.videos if str(video) not in self.finished]


SETTINGS_NAME = "predictions.json"
"""Beside predictions.csv: the checkpoints and settings its rows were predicted with."""


def batch_settings(streams: Sequence[Stream], *, top_k: int,
                   fusion_weights: Sequence[float] | None, fraction: float,
                   flow_short_side: int | None, segments: int | None = None,
                   seconds_per_segment: float | None = None, **_: object) -> dict:
    """What a batch's rows depend on: each stream's checkpoint and views, and the settings
    (``segments`` or ``seconds_per_segment``: N asked for, else the checkpoints' own)."""
    return {"streams": [{"checkpoint": str(Path(s.checkpoint).resolve()), "segments": s.segments,
                         "crops": s.transform.crops} for s in streams],
            "top_k": top_k, "fusion_weights": list(fusion_weights or []),
            "peak_fraction": fraction, "flow_short_side": flow_short_side,
            "segments": segments, "seconds_per_segment": seconds_per_segment}


def plan_batch(target: Path, out: Path, settings: dict) -> Batch:
    """The videos ``target`` names (:func:`listed_videos`), and the rows of ``out``'s
    ``predictions.csv`` to keep: those of videos predicted without an error, by the same
    checkpoints and ``settings`` (:func:`batch_settings`); a CSV of other settings is refused
    in one line, never mixed with new rows or replaced."""
    videos, repeats = listed_videos(target)
    path = out / CSV_NAME
    kept: list[list[str]] = []
    if path.is_file():
        _claim_batch(out, settings)
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))[1:]
        columns = len(csv_header(1))
        kept = [row for row in rows if len(row) == columns and row[1] == "ok"]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SETTINGS_NAME, settings)
    return Batch(csv=path, videos=videos, repeats=repeats, kept=kept,
                 finished={row[0] for row in kept})


def _claim_batch(out: Path, settings: dict) -> None:
    try:
        earlier = json.loads((out / SETTINGS_NAME).read_text())
    except (OSError, ValueError):
        earlier = None
    if earlier == settings:
        return
    said = ("records no settings (written before datp recorded them)" if earlier is None else
            "was predicted with other checkpoints or settings")
    raise InputError(f"{out / CSV_NAME} {said}: its rows are not this prediction's; choose "
                     "another --out, or move it away")


@dataclass(frozen=True)
class BatchOutcome:
    """One video of a batch, once its row is written: its prediction, or the first line of the
    error that stopped it."""

    video: Path
    prediction: Prediction | None
    error: str = ""


def predict_batch(
    batch: Batch,
    streams: Sequence[Stream],
    *,
    top_k: int,
    fusion_weights: Sequence[float] | None,
    fraction: float,
    flow_backend: FlowBackend | None,
    flow_short_side: int | None,
    progress: Progress | None,
    segments: int | None = None,
    seconds_per_segment: float | None = None,
) -> Iterator[BatchOutcome]:
    """Predict the videos of ``batch`` not yet finished (:func:`datp.engine.predict.predict_video`
    with these settings), writing ``batch.csv``: the header, the kept rows, then one row per
    video, flushed at once. Yields each video's outcome after its row is written; a video that
    fails (a user error or an ``OSError``) gets an ``error`` row and the others go on."""
    batch.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(batch.csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(top_k))
        writer.writerows(batch.kept)
        handle.flush()
        for video in batch.todo:
            try:
                prediction = predict_video(
                    video, streams, top_k=top_k, fusion_weights=fusion_weights,
                    fraction=fraction, flow_backend=flow_backend, flow_short_side=flow_short_side,
                    progress=progress, keep_frames=False, segments=segments,
                    seconds_per_segment=seconds_per_segment, localization=None,
                )
            except (UserError, OSError) as error:  # one bad video: the rest go on
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                writer.writerow([str(video), "error", "", "", "", "", "", "", first_line])
                handle.flush()
                yield BatchOutcome(video=video, prediction=None, error=first_line)
                continue
            writer.writerow(_row(video, prediction))
            handle.flush()
            yield BatchOutcome(video=video, prediction=prediction)


def _row(video: Path, prediction: Prediction) -> list[str]:
    """The CSV row of a video predicted: the best class, the top k, the first stream's key
    action in seconds and frames (last frame included), the warnings."""
    best = prediction.top[0]
    peaks = prediction.streams[0].peaks
    seconds = frames = ""
    if peaks:
        peak = peaks[0]
        if peak.start_s is not None:
            seconds = f"{peak.start_s:.3f}-{peak.end_s:.3f}"
        frames = f"{peak.start_frame}-{peak.end_frame - 1}"
    ranked = ";".join(f"{s.name}:{s.probability:.4f}" for s in prediction.top)
    return [str(video), "ok", best.name, f"{best.probability:.6f}", ranked, seconds, frames,
            "; ".join(prediction.warnings), ""]
