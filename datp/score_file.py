"""What a score file holds: the one place that spells its keys, for writing and for reading.

Dimension key: V videos, N segments, C classes.

``datp evaluate`` writes each stream's per-video results as ``scores.pt``; ``datp fuse --out``
writes ``fused_scores.pt``. Both are plain dicts of tensors, numbers, strings and lists (read
with ``weights_only=True``, so loading never unpickles arbitrary objects):

    videos          video ids (relative paths), in evaluation order
    labels          [V] class index of each video
    pooled          [V, C] pooled vectors ("raw scores"; for a fusion, the fused scores)
    classes         class names, in label order
    log_probs       [V, C] log-probabilities                          (scores.pt)
    weights         V x [N] temporal weights                          (scores.pt)
    segment_scores  V x [N, C] per-segment logits (empty: none)       (scores.pt)
    times           V x [N] segment times in [0, 1]                   (scores.pt)
    skipped         videos of the split that could not be read        (scores.pt)
    mixtures        V x [3, K] a mixture pooling's rho, mu, sigma     (scores.pt; empty for
                    other poolings, absent in files written before it was recorded)
    pool            what was pooled: probabilities | logits           (scores.pt)
    protocol        how the scores were made (datp.engine.protocol)   (scores.pt; absent in
                    files written before datp recorded one)
    streams         per fused stream: its score file, weight, protocol  (fused_scores.pt)
    layout          :data:`LAYOUT`; absent in files written before it was recorded, which have
                    the same keys

A file of another layout is refused in one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from datp.checkpoint import describe_load_error
from datp.errors import DataError
from datp.io import atomic_file

LAYOUT = 1
"""The layout this version writes and reads; raise it when a key changes meaning or goes."""

SCORES = "scores.pt"
"""The file name ``datp evaluate`` writes in its report folder."""
FUSED_SCORES = "fused_scores.pt"
"""The file name ``datp fuse --out`` writes."""


@dataclass
class ScoreFile:
    """A score file's content, typed. Read with :meth:`load`, write with :meth:`save`;
    :meth:`to_dict` and :meth:`from_dict` are the file's layout."""

    videos: list[str]
    labels: Tensor
    """[V]"""
    pooled: Tensor
    """[V, C]"""
    classes: list[str]
    log_probs: Tensor | None = None
    """[V, C]; None in a fused file."""
    weights: list[Tensor] = field(default_factory=list)
    segment_scores: list[Tensor] = field(default_factory=list)
    times: list[Tensor] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mixtures: list[Tensor] = field(default_factory=list)
    """V x [3, K]: rho, mu, sigma of a mixture pooling (weak localization evaluates it on a
    dense grid); empty for other poolings and in files written before it was kept."""
    pool: str | None = None
    protocol: dict[str, Any] | None = None
    streams: list[dict[str, Any]] | None = None
    """Set for a fusion: each stream's ``scores`` path, ``weight`` and ``protocol``."""

    @property
    def fused(self) -> bool:
        return self.streams is not None

    # --- the layout: the only code that spells a score file's keys --------------------------

    def to_dict(self) -> dict[str, Any]:
        """The plain dict ``torch.save`` writes (keys in the order datp has always written)."""
        if self.fused:
            return {"videos": self.videos, "labels": self.labels, "pooled": self.pooled,
                    "classes": self.classes, "streams": self.streams, "layout": LAYOUT}
        return {
            "videos": self.videos, "labels": self.labels, "pooled": self.pooled,
            "log_probs": self.log_probs, "weights": self.weights,
            "segment_scores": self.segment_scores, "times": self.times, "skipped": self.skipped,
            "classes": self.classes, "pool": self.pool, "protocol": self.protocol,
            "mixtures": self.mixtures, "layout": LAYOUT,
        }

    @classmethod
    def from_dict(cls, state: Any, *, path: str | Path) -> ScoreFile:
        """The inverse of :meth:`to_dict`, for every layout-1 file datp has written (keys added
        later read as absent); ``DataError`` naming ``path`` for anything else."""
        needed = ("pooled", "videos", "labels", "classes")
        if not isinstance(state, dict) or not set(needed) <= set(state):
            raise DataError(f"{path}: not a datp score file (no {', '.join(map(repr, needed))} "
                            "entries)")
        layout = state.get("layout", 1)
        if layout != LAYOUT or isinstance(layout, bool):
            raise DataError(f"{path}: a score file of layout {layout!r}, which this datp cannot "
                            f"read (it reads layout {LAYOUT}); use the datp that wrote it")
        found = cls(
            videos=list(state["videos"]), labels=state["labels"], pooled=state["pooled"],
            classes=list(state["classes"]), log_probs=state.get("log_probs"),
            weights=state.get("weights", []), segment_scores=state.get("segment_scores", []),
            times=state.get("times", []), skipped=list(state.get("skipped", [])),
            mixtures=list(state.get("mixtures", [])),
            pool=state.get("pool"), protocol=state.get("protocol"), streams=state.get("streams"),
        )
        problem = found.inconsistency()
        if problem:
            raise DataError(f"{path}: not a consistent score file: {problem}")
        return found

    def inconsistency(self) -> str:
        """What does not fit together (shapes against V and C, NaN, non-finite per-step
        values), or "": a file edited or written by something else is refused when read, not
        halfway through a fusion or a localization."""
        v, c = len(self.videos), len(self.classes)
        for name, value in (("labels", self.labels), ("pooled", self.pooled),
                            ("log_probs", self.log_probs)):
            shape = (v,) if name == "labels" else (v, c)
            if value is None and name == "log_probs":
                continue
            if not isinstance(value, Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                return f"{name} is {got}, not {list(shape)} for {v} videos and {c} classes"
            if value.is_floating_point() and bool(value.isnan().any()):
                return f"{name} holds NaN"
        for name in ("weights", "segment_scores", "times"):
            each = getattr(self, name)
            if each and len(each) != v:
                return f"{name} has {len(each)} entries for {v} videos"
        for i, scores in enumerate(self.segment_scores):
            steps = len(self.times[i]) if self.times else scores.shape[0]
            if scores.dim() != 2 or tuple(scores.shape) != (steps, c):
                return (f"segment_scores of {self.videos[i]} is {tuple(scores.shape)}, not "
                        f"[{steps}, {c}] (its steps and the classes)")
            if not bool(torch.isfinite(scores).all()):
                return f"segment_scores of {self.videos[i]} are not all finite"
        return ""

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write atomically: the file under ``path`` is always a whole score file."""
        with atomic_file(path) as handle:
            torch.save(self.to_dict(), handle)

    @classmethod
    def load(cls, path: str | Path) -> ScoreFile:
        """Read a score file safely (``weights_only``); errors name the file and the problem."""
        path = Path(path)
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise DataError(f"{path}: score file {what} (datp evaluate writes {SCORES})")
        try:
            state = torch.load(path, weights_only=True)
        except Exception as error:  # truncated, foreign or unsafe files raise several types
            reason = describe_load_error(error, path)
            raise DataError(f"{path}: not a readable score file: {reason}") from error
        return cls.from_dict(state, path=path)
