"""Late fusion of evaluated streams (the paper's RGB 1 : flow 1.5) and the score files it reads.

Dimension key: V videos, C classes.

``datp evaluate`` writes each stream's per-video results as ``scores.pt`` (a dict of tensors
and lists, read with ``weights_only=True``): ``videos``, ``labels [V]``, ``pooled [V, C]``,
``log_probs [V, C]``, ``weights``, ``segment_scores``, ``times``, ``classes``, ``pool``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from datp.checkpoint import describe_load_error
from datp.config import validate_fusion_weights
from datp.data.errors import DataError
from datp.errors import InputError

FUSION_WEIGHTS: dict[str, float] = {"rgb": 1.0, "flow": 1.5}
"""The paper's late-fusion weights by modality (TSN's 1 : 1.5)."""


def load_scores(path: str | Path) -> dict[str, Any]:
    """A ``scores.pt`` written by ``datp evaluate``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: score file does not exist (datp evaluate writes scores.pt)")
    try:
        scores = torch.load(path, weights_only=True)
    except Exception as error:  # truncated, foreign or unsafe files raise several types
        reason = describe_load_error(error)
        raise DataError(f"{path}: not a readable score file: {reason}") from error
    if not isinstance(scores, dict) or not {"pooled", "videos", "labels", "classes"} <= set(scores):
        raise DataError(f"{path}: not a datp score file (no 'pooled', 'videos', 'labels', "
                        "'classes' entries)")
    return scores


def fuse(
    score_files: Sequence[str | Path], weights: Sequence[float], *, softmax: bool = False
) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Late fusion of streams: ``sum_s weight_s * scores_s`` per video.

    Raw pooled vectors by default (TSN fuses pre-softmax scores; the paper weights RGB 1 and
    flow 1.5), or probabilities with ``softmax=True``. Videos are matched by id, so two
    evaluations in different orders fuse correctly; a video missing from one stream is an error,
    and so is a stream given twice. Returns fused scores ``[V, C]``, labels ``[V]``, video ids
    and class names.
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
    reference = streams[0]
    order = {video: i for i, video in enumerate(reference["videos"])}
    fused = torch.zeros_like(reference["pooled"])
    for index, (path, stream, weight) in enumerate(zip(paths, streams, weights, strict=True)):
        for earlier in range(index):
            if _same_scores(stream, streams[earlier]):
                raise InputError(
                    f"{path}: holds the same scores as {paths[earlier]} (a copy of one stream?)"
                )
        if stream["classes"] != reference["classes"]:
            raise DataError(f"{path}: other classes than {paths[0]}")
        if set(stream["videos"]) != set(order):
            missing = sorted(set(order) ^ set(stream["videos"]))[:5]
            raise DataError(f"{path}: covers other videos than {paths[0]} (e.g. {missing})")
        positions = torch.tensor([order[v] for v in stream["videos"]])
        values = stream["log_probs"].exp() if softmax else stream["pooled"]
        fused[positions] += weight * values
        if not torch.equal(reference["labels"][positions], stream["labels"]):
            raise DataError(f"{path}: disagrees with {paths[0]} on the labels of some videos")
    return fused, reference["labels"], reference["videos"], reference["classes"]


def _same_scores(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["videos"] == b["videos"]
        and a["pooled"].shape == b["pooled"].shape
        and torch.equal(a["pooled"], b["pooled"])
    )
