"""The video dataset: annotation items -> sources -> TSN segments -> transformed tensors.

B videos, N segments, V views (test crops), D channels (3 RGB; 2L flow, x and y interleaved),
L flow fields per segment, S image side.

An item is the dict of docs/ARCHITECTURE.md: ``inputs`` float32 ``[N, D, S, S]`` (training) or
``[V, N, D, S, S]`` (testing), ``label`` int, ``times`` float32 ``[N]`` in [0, 1],
``frame_indices`` int64 ``[N]`` (0-based start of each segment) and ``video`` (relative path).

Randomness: each item draws its own numpy generator from torch's generator, so the DataLoader's
per-worker seeding gives every worker and epoch different draws, and ``torch.manual_seed``
makes a single-process run reproducible.

Bad videos raise :class:`DataError` naming the file. With ``skip_bad_videos=True`` a bad video
is logged and its item becomes a :class:`SkippedVideo`; :func:`collate_videos` drops those
from the batch and lists them under ``batch["skipped"]`` (a batch with nothing left has only that
key), so that training and evaluation count them. No other video is ever substituted. Videos the
annotations name but that do not exist are, with ``skip_bad_videos``, left out of the dataset and
listed in ``dataset.missing``.

Each item also carries ``num_frames``, the frames (or flow fields) its video has: a video shorter
than the N segments it is sampled into repeats frames, and the training loop says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from datp.choices import Modality
from datp.data.device_decode import (
    EncodedBatch,
    EncodedClip,
    SkippedVideo,
    encode_clip,
    pixels_clip,
)
from datp.data.frames import FlowFolder, FrameFolder
from datp.data.sampling import eval_starts, normalized_times, train_starts
from datp.data.splits import VideoItem
from datp.data.transforms import EvalTransform, TrainTransform
from datp.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModalityKind:
    """How one modality's segments are read from a source, for a stack length L."""

    frames_per_segment: Callable[[int], int]
    """L -> the frames (or flow fields) a segment reads: 1 for RGB, L for flow."""
    channels: Callable[[int], int]
    """L -> D_in, the network's input channels: 3 for RGB, 2L for flow."""
    read: Callable[[Any, np.ndarray, int], torch.Tensor]
    """``(source, starts [N], L) -> uint8 [N, D_in, H, W]``."""
    paths: Callable[[Any, np.ndarray, int], list]
    """``(folder, starts [N], L) -> the JPEG files of the segments`` (device decoding)."""


MODALITIES: dict[Modality, ModalityKind] = {
    "rgb": ModalityKind(
        frames_per_segment=lambda length: 1, channels=lambda length: 3,
        read=lambda source, starts, length: torch.from_numpy(  # [N, H, W, 3] -> [N, 3, H, W]
            source.read(starts)).permute(0, 3, 1, 2),
        paths=lambda folder, starts, length: folder.image_paths(starts)),
    "flow": ModalityKind(
        frames_per_segment=lambda length: length, channels=lambda length: 2 * length,
        read=lambda source, starts, length: torch.from_numpy(  # [N, L, 2, H, W] -> [N, 2L, H, W]
            source.read_flow(starts, length)).flatten(1, 2),  # x1 y1 x2 y2 ...
        paths=lambda folder, starts, length: folder.image_paths(starts, length)),
}
"""data.modality -> how its segments are read."""


class VideoDataset(torch.utils.data.Dataset):
    """TSN-style dataset over ``items``; ``open_source(item)`` gives a frame or flow source.

    ``transform`` takes uint8 ``[N, D, H, W]`` and, in training, the item's numpy generator:
    ``transform(video, rng)``; in testing ``transform(video)``. None returns the uint8 frames.
    With ``decode_on_device`` the transform's random draw happens here and the rest on the device
    (``datp.data.device_decode``).
    """

    def __init__(
        self, *, items: Sequence[VideoItem], classes: Sequence[str],
        open_source: Callable[[VideoItem], Any], modality: str = "rgb", num_segments: int = 10,
        flow_length: int = 5, train: bool = True,
        transform: Callable[..., torch.Tensor] | None = None, skip_bad_videos: bool = False,
        missing: Sequence[str] = (), decode_on_device: bool = False,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got "
                             f"{modality!r}")
        if decode_on_device and not isinstance(transform, TrainTransform | EvalTransform):
            raise ValueError("decode_on_device needs a TrainTransform or EvalTransform")
        if not items:
            raise ValueError("a dataset needs at least one video")
        self.items = list(items)
        self.classes = list(classes)
        self.open_source = open_source
        self.modality = modality
        self.num_segments = num_segments
        self.flow_length = MODALITIES[modality].frames_per_segment(flow_length)
        self.train = train
        self.transform = transform
        self.skip_bad_videos = skip_bad_videos
        self.missing = list(missing)
        """Videos the annotations name that do not exist and were left out ("where: what")."""
        self.decode_on_device = decode_on_device
        """Items carry an :class:`EncodedClip` (JPEG bytes and the crop drawn) as ``inputs``,
        for :func:`datp.data.device_decode.decode_batch` to decode and crop on the device."""

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedVideo:
        item = self.items[index]
        try:
            return self._load(item)
        except DataError as error:
            if not self.skip_bad_videos:
                raise
            log.warning("skipping bad video %s (%s): %s", item.path, item.origin, error)
            return SkippedVideo(video=item.path, reason=str(error).splitlines()[0])

    def _load(self, item: VideoItem) -> dict[str, Any]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        source = self.open_source(item)
        try:
            num_frames = source.num_frames
            length = self.flow_length
            if self.train:
                starts = train_starts(num_frames, self.num_segments, length=length, rng=rng)
            else:
                starts = eval_starts(num_frames, self.num_segments, length=length)
            modality = MODALITIES[self.modality]
            if self.decode_on_device and isinstance(source, FrameFolder | FlowFolder):
                video = encode_clip(modality.paths(source, starts, length), segments=len(starts),
                                    folder=source.path, transform=self.transform,
                                    rng=rng if self.train else None)
            else:
                video = modality.read(source, starts, length)  # [N, D_in, H, W]
        finally:
            release = getattr(self.open_source, "release", None)
            if release is not None:
                release(source)
            elif (close := getattr(source, "close", None)) is not None:
                close()
        if self.decode_on_device:
            if not isinstance(video, EncodedClip):  # decoded here; cropped on the device
                video = pixels_clip(video, transform=self.transform, path=item.path,
                                    rng=rng if self.train else None)
            video.skippable = self.skip_bad_videos  # what a clip that cannot be decoded does
        elif self.transform is not None:
            video = self.transform(video, rng) if self.train else self.transform(video)
        return {
            "inputs": video,
            "label": item.label,
            "times": torch.from_numpy(normalized_times(starts, num_frames=num_frames,
                                                       length=length)),
            "frame_indices": torch.from_numpy(starts),
            "video": item.path,
            "num_frames": num_frames,
        }

    def __repr__(self) -> str:
        return (f"VideoDataset({len(self)} videos, {len(self.classes)} classes, "
                f"modality={self.modality!r}, N={self.num_segments}, train={self.train}, "
                f"transform={self.transform})")


def collate_videos(batch: list[dict[str, Any] | SkippedVideo]) -> dict[str, Any]:
    """Default collate of the videos that could be read; ``skipped`` lists the
    :class:`SkippedVideo` items of those that could not (a batch of skipped videos only has no
    other key). Clips left encoded for the device become one :class:`EncodedBatch`."""
    skipped = [sample for sample in batch if isinstance(sample, SkippedVideo)]
    kept = [sample for sample in batch if not isinstance(sample, SkippedVideo)]
    encoded = [sample["inputs"] for sample in kept if isinstance(sample["inputs"], EncodedClip)]
    if encoded:  # device decoding: the bytes of all clips in one buffer, decoded there
        kept = [{key: value for key, value in sample.items() if key != "inputs"}
                for sample in kept]
    collated = torch.utils.data.default_collate(kept) if kept else {}
    if encoded:
        collated["inputs"] = EncodedBatch.collate(encoded)
    collated["skipped"] = skipped
    return collated


def subset_transform(
    subset: str, *, image_size: int, modality: str, resize_short: int | None, flip: bool,
    test_crops: int, normalize: bool,
) -> TrainTransform | EvalTransform:
    """The transform of a subset: training's random crops (and flips), or the test crops."""
    if subset == "train":
        return TrainTransform(size=image_size, modality=modality, resize_short=resize_short,
                              flip=flip, normalize=normalize)
    return EvalTransform(size=image_size, modality=modality, resize_short=resize_short,
                         crops=test_crops, normalize=normalize)


