"""Late fusion of evaluated streams (the paper's RGB 1 : flow 1.5) and the score files it reads.

Dimension key: V videos, C classes.

This module reads score files and checks that they can be fused; the arithmetic and the weights
are :mod:`datp.scoring`'s.

``datp evaluate`` writes each stream's per-video results as ``scores.pt``, a
:class:`datp.score_file.ScoreFile` (its keys are spelled there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from datp.engine.protocol import compare_protocols
from datp.errors import DataError, InputError
from datp.io import atomic_write_json
from datp.score_file import FUSED_SCORES, ScoreFile
from datp.scoring import fuse_scores, validate_fusion_weights


def load_scores(path: str | Path) -> ScoreFile:
    """A ``scores.pt`` written by ``datp evaluate``; errors name the file."""
    return ScoreFile.load(path)


@dataclass
class Fused:
    """Fused scores and how the streams were made."""

    scores: Tensor  # [V, C]
    labels: Tensor  # [V]
    videos: list[str]
    classes: list[str]
    protocols: list[dict[str, Any] | None]
    """Each stream's protocol record (None: a file written before datp recorded one)."""
    differences: list[str]
    """One line per stream whose protocol differs from the first's, naming the settings."""

    @property
    def unknown(self) -> list[int]:
        """Indices of the streams whose protocol is unknown (score files from before datp
        recorded one)."""
        return [i for i, protocol in enumerate(self.protocols) if protocol is None]


def fuse(
    score_files: Sequence[str | Path], weights: Sequence[float], *, softmax: bool = False
) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """:func:`fuse_streams` as fused scores ``[V, C]``, labels ``[V]``, video ids and class
    names."""
    fused = fuse_streams(score_files, weights, softmax=softmax)
    return fused.scores, fused.labels, fused.videos, fused.classes


def fuse_streams(
    score_files: Sequence[str | Path], weights: Sequence[float], *, softmax: bool = False
) -> Fused:
    """Late fusion of streams: ``sum_s weight_s * scores_s`` per video.

    Raw pooled vectors by default (TSN fuses pre-softmax scores; the paper weights RGB 1 and
    flow 1.5), or probabilities with ``softmax=True``. Videos are matched by id, so two
    evaluations in different orders fuse correctly; a video missing from one stream is an error,
    and so is a stream given twice, and so are protocols of another split or video list
    (:func:`datp.engine.protocol.compare_protocols`); their other differences are in
    ``differences``.
    """
    paths = [Path(p) for p in score_files]
    if len(paths) < 2:
        raise InputError(f"fusion needs at least two score files, got {len(paths)}")
    weights = validate_fusion_weights(weights, option="fusion weights", num_streams=len(paths))
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise InputError(f"{path}: given twice (as {seen[key]} too); fuse different streams")
        seen[key] = path
    streams = [load_scores(p) for p in paths]
    differences = _protocol_differences(paths, [s.protocol for s in streams])
    reference = streams[0]
    order = {video: i for i, video in enumerate(reference.videos)}
    aligned = []  # each stream's values [V, C], in the first stream's order of videos
    for index, (path, stream) in enumerate(zip(paths, streams, strict=True)):
        for earlier in range(index):
            if _same_scores(stream, streams[earlier]):
                raise InputError(
                    f"{path}: holds the same scores as {paths[earlier]} (a copy of one stream?)"
                )
        if stream.classes != reference.classes:
            raise DataError(f"{path}: other classes than {paths[0]}")
        if set(stream.videos) != set(order):
            missing = sorted(set(order) ^ set(stream.videos))[:5]
            raise DataError(f"{path}: covers other videos than {paths[0]} (e.g. {missing})")
        positions = torch.tensor([order[v] for v in stream.videos])
        values = stream.log_probs.exp() if softmax else stream.pooled
        aligned.append(torch.zeros_like(values))
        aligned[-1][positions] = values
        if not torch.equal(reference.labels[positions], stream.labels):
            raise DataError(f"{path}: disagrees with {paths[0]} on the labels of some videos")
    fused = fuse_scores(aligned, weights)
    return Fused(fused, reference.labels, reference.videos, reference.classes,
                 [s.protocol for s in streams], differences)


def _protocol_differences(
    paths: list[Path], protocols: list[dict[str, Any] | None]
) -> list[str]:
    """Raise ``DataError`` naming the first incomparable difference from the first known
    protocol; return the other differences, one line per stream."""
    notes = []
    known = [(p, r) for p, r in zip(paths, protocols, strict=True) if r is not None]
    for path, protocol in known[1:]:
        incomparable, other = compare_protocols(known[0][1], protocol)
        if incomparable:
            raise DataError(f"{path}: scores of another split or another set of videos than "
                            f"{known[0][0]}: " + "; ".join(incomparable))
        if other:
            notes.append(f"{path} differs from {known[0][0]}: " + "; ".join(other))
    return notes


def _same_scores(a: ScoreFile, b: ScoreFile) -> bool:
    same_shape = a.videos == b.videos and a.pooled.shape == b.pooled.shape
    return same_shape and torch.equal(a.pooled, b.pooled)


def write_fused_report(
    out: Path, fused: Fused, *, score_files: Sequence[str | Path], weights: Sequence[float],
    softmax: bool, metrics: dict[str, float],
) -> None:
    """The report of a fusion in ``out``: ``metrics.json`` (``metrics``, the weights, and per
    stream its score file, weight and protocol) and ``fused_scores.pt`` (a fused
    :class:`datp.score_file.ScoreFile`), each written atomically."""
    streams = [{"scores": str(Path(p).resolve()), "weight": w, "protocol": protocol}
               for p, w, protocol in zip(score_files, weights, fused.protocols, strict=True)]
    atomic_write_json(out / "metrics.json",
                      {**metrics, "weights": weights, "softmax": softmax, "streams": streams})
    ScoreFile(videos=fused.videos, labels=fused.labels, pooled=fused.scores,
              classes=fused.classes, streams=streams).save(out / FUSED_SCORES)
