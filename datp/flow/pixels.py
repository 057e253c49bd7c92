"""The pixel work before optical flow: RGB frames to gray, resized to the flow's size.

T frames, H, W the frames' size, h, w the flow's.

One function for every device and caller (``datp flow`` on a CPU, where its decoding thread
converts whole videos; on a GPU, where :meth:`datp.flow.backends.TorchTVL1.fields` converts each
batch of frames on the device; prediction's flow computed on demand), whose answer for a frame
does not depend on the frames converted with it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)
"""BT.601 weights of R, G and B in the gray value."""

GRAY_FRAMES_AT_ONCE = 32
"""Frames converted together (a float copy of each is made): the answer does not depend on it."""


def gray_resized(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB ``[T, H, W, 3]`` -> uint8 gray ``[T, h, w]`` on the frames' device: BT.601
    luma in float32, then a bilinear resize to ``size``, rounded.

    The luma is three multiplies and two adds, one operation at a time, so that a frame's gray
    is the same whatever frames it is converted with, on any device. The matrix-vector product
    used before issue 29 gives float values that depend on how many frames are converted
    together (the BLAS kernel's blocking); its rounded gray differs from this one by one level
    in 1,043 of the 16.7 M colours (2 pixels of 2.1 M on generated 640x480 frames resized to
    340x256)."""
    out = []
    for chunk in frames.split(GRAY_FRAMES_AT_ONCE):
        channels = chunk.unbind(-1)  # 3 x [t, H, W]
        gray = channels[0].to(torch.float32).mul_(LUMA[0])
        for channel, weight in zip(channels[1:], LUMA[1:], strict=True):
            gray.add_(channel.to(torch.float32).mul_(weight))
        if tuple(gray.shape[-2:]) != tuple(size):
            gray = F.interpolate(gray[:, None], size=size, mode="bilinear",
                                 align_corners=False)[:, 0]
        out.append(gray.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_gray_resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`gray_resized` of numpy frames on the CPU."""
    return gray_resized(torch.from_numpy(frames), size).numpy()
