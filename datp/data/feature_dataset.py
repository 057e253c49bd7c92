"""A dataset over cached feature sequences: TSN sampling on the feature timeline.

N segments, T steps of the video's feature sequence, D channels.

The items are those of :class:`datp.data.dataset.VideoDataset` (docs/ARCHITECTURE.md, "Contract:
dataset samples"), with features in place of frames:

| key | training | testing |
| --- | --- | --- |
| ``inputs`` | float32 ``[N, D]`` | float32 ``[N, D]`` (one view: no V) |
| ``label`` | int | int |
| ``times`` | float32 ``[N]``: a step's seconds / the video's duration, in [0, 1] | same |
| ``frame_indices`` | int64 ``[N]``: the step each segment reads | same |
| ``video``, ``num_frames`` | the video's id (relative path); T, its steps | same |

The T steps are split into N equal segments as TSN splits frames (:mod:`datp.data.sampling`):
a random step inside each segment in training, the centre step of each in testing, steps spread
evenly (repeating) when T < N. A segment's time comes from the file's seconds, not from its
index, so windows of any stride and variable frame rates keep their true place in the video.

A feature file that is missing or unreadable behaves as a bad video does: ``DataError`` naming
the file, or with ``skip_bad_videos`` a :class:`datp.data.dataset.SkippedVideo` item (batch
them with :func:`datp.data.dataset.collate_videos`) and, for files missing when the dataset is
made, a line in ``dataset.missing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datp.data.dataset import VideoDataset
from datp.data.features import FeatureSet
from datp.data.sampling import eval_starts, train_starts
from datp.data.splits import Split, VideoItem, keep_existing


class FeatureDataset(torch.utils.data.Dataset):
    """TSN segments over the feature sequences of ``items`` in ``features``
    (:func:`datp.data.features.open_feature_set`)."""

    def __init__(
        self, *, items: Sequence[VideoItem], classes: Sequence[str], features: FeatureSet,
        num_segments: int = 10, train: bool = True, skip_bad_videos: bool = False,
        missing: Sequence[str] = (), channels: int | None = None,
    ) -> None:
        if not items:
            raise ValueError("a dataset needs at least one video")
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.items = list(items)
        self.classes = list(classes)
        self.features = features
        self.num_segments = num_segments
        self.train = train
        self.skip_bad_videos = skip_bad_videos
        self.missing = list(missing)
        """Videos the annotations name whose feature file does not exist ("where: what")."""
        self.channels = channels
        """D, which every file must have (None: not checked)."""

    def __len__(self) -> int:
        return len(self.items)

    # A bad feature file is a bad video: VideoDataset's rule, its code (``_load`` below, then a
    # SkippedVideo with ``skip_bad_videos``).
    __getitem__ = VideoDataset.__getitem__

    def _load(self, item: VideoItem) -> dict[str, Any]:
        sequence = self.features.open(item.path)
        steps = sequence.num_steps
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            starts = train_starts(steps, self.num_segments, rng=rng)
        else:
            starts = eval_starts(steps, self.num_segments)
        rows = sequence.rows(starts, channels=self.channels)  # [N, D]: N rows read
        return {
            "inputs": torch.from_numpy(rows),  # [N, D], in testing too: one view
            "label": item.label,
            "times": torch.from_numpy(sequence.normalized_times(starts)),
            "frame_indices": torch.from_numpy(starts),
            "video": item.path,
            "num_frames": steps,
        }

    def __repr__(self) -> str:
        return (f"FeatureDataset({len(self)} videos, {len(self.classes)} classes, "
                f"{self.features.layout} features at {self.features.root}, "
                f"N={self.num_segments}, train={self.train})")


def feature_dataset(
    split: Split, *, features: FeatureSet, num_segments: int, train: bool,
    skip_bad_videos: bool = False, channels: int | None = None,
) -> FeatureDataset:
    """The dataset of a split's items (``datp.data.splits``) over ``features``; items whose
    feature file does not exist are one ``DataError`` listing all of them or, with
    ``skip_bad_videos``, left out (each logged, all listed in ``dataset.missing``)."""
    def problem_of(item: VideoItem) -> str | None:
        absent = features.missing(item.path)
        return (None if absent is None
                else f"{item.origin}: {absent} does not exist (features of {item.path})")

    items, problems = keep_existing(split, problem_of, skip_bad_videos=skip_bad_videos,
                                    none_left="none of its videos have features")
    return FeatureDataset(items=items, classes=split.classes, features=features,
                          num_segments=num_segments, train=train,
                          skip_bad_videos=skip_bad_videos, missing=problems, channels=channels)
