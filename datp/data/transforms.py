"""Training and test transforms for a whole video: one random draw, applied to every segment.

T segments, D channels (3 RGB, 2L flow), H, W image size, V views (crops), S output side.
Input: uint8 ``[T, D, H, W]``; output: normalized float32 ``[T, D, S, S]`` (training) or
``[V, T, D, S, S]`` (testing). Works on any device, so batches can be transformed on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from datp.choices import TestCrops
from datp.data import functional as F


def _check(video: torch.Tensor, modality: str) -> None:
    if video.ndim != 4 or video.dtype != torch.uint8:
        raise ValueError(f"expected uint8 [T, D, H, W], got {video.dtype} {tuple(video.shape)}")
    if modality not in ("rgb", "flow"):
        raise ValueError(f'modality must be "rgb" or "flow", got {modality!r}')


@dataclass(frozen=True)
class CropDraw:
    """What a training transform draws for one video: the box ``(top, left, height, width)`` in
    the frame as stored, and whether to mirror it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


class TrainTransform:
    """Resize the short side (optional), TSN multi-scale corner crop (or a plain random crop),
    resize to ``size``, random horizontal flip (negating x flow), normalize (or, with
    ``normalize=False``, leave uint8 for the device to normalize)."""

    def __init__(
        self, *, size: int, modality: str = "rgb", resize_short: int | None = None,
        scales: Sequence[float] = F.TSN_SCALES, multi_scale: bool = True, flip: bool = True,
        normalize: bool = True,
    ) -> None:
        self.size = size
        self.modality = modality
        self.resize_short = resize_short
        self.scales = tuple(scales)
        self.multi_scale = multi_scale
        self.flip = flip
        self.normalize = normalize

    def draw(self, height: int, width: int, rng: np.random.Generator) -> CropDraw:
        """The random part, for a ``height`` x ``width`` video: the box and the flip."""
        # The box is drawn on the frame as resized to resize_short, then mapped back, so the
        # frame is resized once (crop, then resize to size) instead of twice.
        scale = self.resize_short / min(height, width) if self.resize_short else 1.0
        h, w = round(height * scale), round(width * scale)
        if self.multi_scale:
            box = F.multi_scale_crop_box(h, w, output_size=self.size, scales=self.scales, rng=rng)
        else:
            box = F.random_crop_box(h, w, size=self.size, rng=rng)
        top, left, box_h, box_w = (round(v / scale) for v in box)
        box_h, box_w = min(max(box_h, 1), height - top), min(max(box_w, 1), width - left)
        flip = bool(self.flip and rng.random() < 0.5)
        return CropDraw(top=top, left=left, height=box_h, width=box_w, flip=flip)

    def apply(self, video: torch.Tensor, draw: CropDraw) -> torch.Tensor:
        """uint8 ``[..., T, D, H, W]`` -> uint8 ``[..., T, D, size, size]``: crop, resize, flip
        (no normalization); every leading index gets the same ``draw``."""
        video = F.crop(video, draw.top, draw.left, draw.height, draw.width)
        video = F.resize(video, (self.size, self.size))
        return F.hflip(video, flow=self.modality == "flow") if draw.flip else video

    def __call__(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``[T, D, H, W]`` -> float32 (or uint8) ``[T, D, size, size]``."""
        _check(video, self.modality)
        video = self.apply(video, self.draw(*video.shape[-2:], rng))
        return F.normalize(video, modality=self.modality) if self.normalize else video

    def __repr__(self) -> str:
        return (f"TrainTransform(size={self.size}, modality={self.modality!r}, "
                f"resize_short={self.resize_short}, scales={self.scales}, "
                f"multi_scale={self.multi_scale}, flip={self.flip})")


CROPS: dict[TestCrops, Callable[[torch.Tensor, int, bool], torch.Tensor]] = {
    1: lambda video, size, flow: F.center_crop(video, size)[None],  # [1, ..., T, D, S, S]
    3: lambda video, size, flow: F.three_crop(video, size),
    10: lambda video, size, flow: F.ten_crop(video, size, flow=flow),
}
"""data.test_crops -> the views of a test video, ``(video [..., T, D, H, W], size, flow) ->
[V, ..., T, D, size, size]`` (TSN's centre, three and ten crops)."""


class EvalTransform:
    """Resize the short side, then 1 (centre), 3 or 10 crops of ``size``, normalized (or uint8
    with ``normalize=False``)."""

    def __init__(
        self, *, size: int, modality: str = "rgb", resize_short: int | None = None,
        crops: int = 1, normalize: bool = True,
    ) -> None:
        if crops not in CROPS:
            raise ValueError(f"test crops must be 1, 3 or 10, got {crops}")
        self.size = size
        self.modality = modality
        self.resize_short = resize_short
        self.crops = crops
        self.normalize = normalize

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[T, D, H, W]`` -> float32 (or uint8) ``[V, T, D, size, size]``."""
        _check(video, self.modality)
        views = self.views(video)
        return F.normalize(views, modality=self.modality) if self.normalize else views

    def views(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[..., T, D, H, W]`` -> uint8 ``[V, ..., T, D, size, size]`` (not normalized)."""
        video = F.resize_short(video, self.resize_short or self.size)
        return CROPS[self.crops](video, self.size, self.modality == "flow")

    def __repr__(self) -> str:
        return (f"EvalTransform(size={self.size}, modality={self.modality!r}, "
                f"resize_short={self.resize_short}, crops={self.crops})")
