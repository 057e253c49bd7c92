"""Pure transform kernels on video tensors ``[..., T, D, H, W]`` (uint8 or float, any device).

T frames (segments), D channels (3 for RGB; 2L for flow stacks, x and y interleaved, so the x
components are channels 0, 2, 4, ...), H, W image size, V views (crops).

Quantized flow follows TSN: uint8 with 128 for no motion, so flipping maps x to ``255 - x``
(exactly ``-v`` after dequantization); float flow maps x to ``-x``. Resizing does not rescale
flow values, as in TSN and mmaction2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def crop(video: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``[..., H, W]`` -> ``[..., height, width]``; the box must lie inside the image."""
    H, W = video.shape[-2:]
    if top < 0 or left < 0 or top + height > H or left + width > W:
        raise ValueError(f"crop box {(top, left, height, width)} outside a {H}x{W} image")
    return video[..., top : top + height, left : left + width]


def resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., D, H, W]`` -> ``[..., D, h, w]`` with ``size = (h, w)``; bilinear, antialiased."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    shape = video.shape
    # torchvision's fast uint8 kernels take 1, 3 or 4 channels: resize a flow stack [.., 2L, ..]
    # as 2L one-channel images (about 2.5x faster than its generic path for 2L = 10).
    channels = 3 if shape[-3] == 3 else 1
    flat = video.reshape(-1, channels, *shape[-2:])  # [*, 3 or 1, H, W]
    out = TF.resize(flat, list(size), antialias=True)
    return out.reshape(*shape[:-2], *out.shape[-2:])


def resize_short(video: torch.Tensor, short: int) -> torch.Tensor:
    """Resize so that the shorter side is ``short``, keeping the aspect ratio."""
    H, W = video.shape[-2:]
    if H <= W:
        size = (short, max(1, round(W * short / H)))
    else:
        size = (max(1, round(H * short / W)), short)
    return resize(video, size)


def hflip(video: torch.Tensor, *, flow: bool = False) -> torch.Tensor:
    """Mirror left-right; for flow ``[..., 2L, H, W]`` also negate every x component."""
    out = video.flip(-1)
    if flow:
        if out.shape[-3] % 2:
            raise ValueError(f"flow needs an even channel count (x, y pairs), got {out.shape[-3]}")
        out = out.clone()
        x = out[..., 0::2, :, :]
        out[..., 0::2, :, :] = 255 - x if out.dtype == torch.uint8 else -x
    return out


def batch_crop_resize_flip(
    videos: Sequence[torch.Tensor], boxes: Sequence[tuple[int, int, int, int]],
    flips: Sequence[bool], *, size: int, flow: bool = False,
) -> torch.Tensor:
    """B videos ``[N, D, H_b, W_b]`` (sizes may differ) -> ``[B, N, D, size, size]``: video b
    cropped to ``boxes[b] = (top, left, height, width)``, resized, and mirrored where
    ``flips[b]``; as :func:`crop`, :func:`resize` and :func:`hflip` one video at a time, but
    with one resize per distinct box size and one flip for all the mirrored videos."""
    if not (len(videos) == len(boxes) == len(flips)) or not videos:
        raise ValueError(f"expected as many boxes and flips as videos (at least one), got "
                         f"{len(videos)}, {len(boxes)}, {len(flips)}")
    crops = [crop(video, *box) for video, box in zip(videos, boxes, strict=True)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, piece in enumerate(crops):
        groups.setdefault(tuple(piece.shape), []).append(b)
    # Gathered with Python lists, never with index tensors: a list index on a GPU tensor is
    # copied to the device first, and that copy waits for the device.
    out: list[torch.Tensor] = list(crops)
    for members in groups.values():
        resized = resize(torch.stack([crops[b] for b in members]), (size, size))
        for b, video in zip(members, resized, strict=True):
            out[b] = video
    mirrored = [b for b, flip in enumerate(flips) if flip]
    if mirrored:
        flipped = hflip(torch.stack([out[b] for b in mirrored]), flow=flow)
        for b, video in zip(mirrored, flipped, strict=True):
            out[b] = video
    return torch.stack(out)  # [B, N, D, S, S]


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    H, W = video.shape[-2:]
    return crop(video, (H - size) // 2, (W - size) // 2, size, size)


def three_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., H, W]`` -> ``[3, ..., size, size]``: start, centre and end along the longer side."""
    H, W = video.shape[-2:]
    if W >= H:
        boxes = [((H - size) // 2, left) for left in (0, (W - size) // 2, W - size)]
    else:
        boxes = [(top, (W - size) // 2) for top in (0, (H - size) // 2, H - size)]
    return torch.stack([crop(video, top, left, size, size) for top, left in boxes])


def five_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., H, W]`` -> ``[5, ..., size, size]``: four corners, then the centre."""
    H, W = video.shape[-2:]
    boxes = [(0, 0), (0, W - size), (H - size, 0), (H - size, W - size),
             ((H - size) // 2, (W - size) // 2)]
    return torch.stack([crop(video, top, left, size, size) for top, left in boxes])


def ten_crop(video: torch.Tensor, size: int, *, flow: bool = False) -> torch.Tensor:
    """``[..., H, W]`` -> ``[10, ..., size, size]``: five crops, then their mirror images."""
    crops = five_crop(video, size)
    return torch.cat([crops, hflip(crops, flow=flow)])


def rgb_scale_shift(device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's normalization of uint8 RGB as ``x * scale - shift`` per channel: ``scale`` is
    ``1 / (255 std)``, ``shift`` is ``mean / std``, both float32 ``[3]`` computed on ``device``
    (the CPU by default). :func:`normalize` and :func:`normalize_on` both
    take them from here, so the loader and the device normalize to the same bits."""
    std = torch.tensor(IMAGENET_STD, device=device) * 255
    mean = torch.tensor(IMAGENET_MEAN, device=device) * 255
    return 1.0 / std, mean / std


def normalize(video: torch.Tensor, *, modality: str) -> torch.Tensor:
    """uint8 ``[..., D, H, W]`` -> float32: RGB with ImageNet mean and std, flow to [-1, 1]."""
    if video.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 input, got {video.dtype}")
    x = video.to(torch.float32)  # a new tensor: the in-place steps below are safe
    if modality == "rgb":
        if x.shape[-3] != 3:
            raise ValueError(f"RGB needs 3 channels, got {x.shape[-3]}")
        scale, shift = rgb_scale_shift(x.device)
        return x.mul_(scale.view(3, 1, 1)).sub_(shift.view(3, 1, 1))
    if modality == "flow":
        return x.mul_(1.0 / 128.0).sub_(1.0)
    raise ValueError(f'modality must be "rgb" or "flow", got {modality!r}')


def multi_scale_crop_box(
    height: int, width: int, *, output_size: int, scales: Sequence[float] = TSN_SCALES,
    max_distort: int = 1, fix_crop: bool = True, more_fix_crop: bool = True,
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop: ``(top, left, h, w)`` of a box to crop and resize to output_size.

    The box sides are ``scale * min(H, W)`` for scales drawn independently for height and width
    (at most ``max_distort`` steps apart in the scale list); a side within 3 pixels of
    ``output_size`` snaps to it. With ``fix_crop`` the box sits at one of 5 (or, with
    ``more_fix_crop``, 13) fixed positions on a 4 x 4 grid: corners, centre, edge middles and
    quarter points; otherwise anywhere.
    """
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [output_size if abs(s - output_size) < 3 else s for s in sides]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides)
             if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[rng.integers(len(pairs))]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    if not fix_crop:
        top = int(rng.integers(height - crop_h + 1))
        left = int(rng.integers(width - crop_w + 1))
        return top, left, crop_h, crop_w
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    row, col = grid[rng.integers(len(grid))]
    return row * h_step, col * w_step, crop_h, crop_w


def random_crop_box(
    height: int, width: int, *, size: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A ``size`` x ``size`` box anywhere in the image: ``(top, left, h, w)``."""
    if size > height or size > width:
        raise ValueError(f"crop size {size} larger than the {height}x{width} image")
    return int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1)), size, size


def normalize_on(inputs: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., D_in, H, W]`` -> float32 on the tensor's device, the same bits as the
    loader's :func:`normalize` (RGB when D_in is 3, else flow). Its
    constants go in as numbers, not tensors: a tensor built on a GPU from a list is a blocking
    copy that holds the host, at every batch."""
    if inputs.shape[-3] != 3:
        return normalize(inputs, modality="flow")  # numbers only
    scales, shifts = rgb_scale_shift()  # on the CPU, float32 as the loader computes them
    x = inputs.to(torch.float32)
    for c, (scale, shift) in enumerate(zip(scales.tolist(), shifts.tolist(), strict=True)):
        x[..., c, :, :].mul_(scale).sub_(shift)  # float32-exact numbers: the loader's bits
    return x
