"""Pre-extracted frame folders: RGB ``img_%05d.jpg``, TSN flow ``flow_x_%05d.jpg`` / ``flow_y_``.

T frames (or flow stacks), L flow fields per stack, H, W image size.

Names are 1-based, as dense_flow and mmaction2 write them. Flow fields are quantized with bound
20: a pixel value ``q`` means ``v = q / 255 * 40 - 20`` pixels, so 128 is (almost) no motion.
``FlowFolder.read_flow`` returns the quantized values ``[T, L, 2, H, W]`` (x then y); use
:func:`dequantize_flow` for pixels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from datp.errors import DataError

FLOW_BOUND = 20.0
FlowArray = TypeVar("FlowArray", np.ndarray, torch.Tensor)


@runtime_checkable
class FlowSource(Protocol):
    """What every flow source offers: ``num_frames`` flow fields, read as stacks of ``length``.

    Stacks running past the last field repeat the last field.
    """

    path: Path
    num_frames: int

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized flow ``[T, L, 2, H, W]``: fields ``start .. start + L - 1`` per start."""
        ...


def quantize_flow(flow: FlowArray, *, bound: float = FLOW_BOUND) -> FlowArray:
    """Pixels ``[..., H, W]`` (float: numpy, or torch on any device) to uint8 with TSN's mapping
    ``round(255 (v + b) / 2b)``: clamp, add, multiply and round (half to even) in the input's
    float type, one operation at a time, so the bits are the same on every device and the
    same as numpy's ``np.round((np.clip(v, -b, b) + b) * (255 / 2b))``."""
    tensor = torch.as_tensor(flow)  # a numpy array's memory, not a copy
    quantized = tensor.clamp(-bound, bound).add_(bound).mul_(255.0 / (2 * bound)).round_()
    quantized = quantized.to(torch.uint8)
    return quantized.numpy() if isinstance(flow, np.ndarray) else quantized


def dequantize_flow(quantized: np.ndarray, *, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 ``[...]`` to float32 pixels: ``v = q / 255 * 2b - b``."""
    return quantized.astype(np.float32) * (2 * bound / 255.0) - bound


def _imread(path: Path, *, gray: bool) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB or ``[H, W]`` gray; cv2 when installed, else Pillow."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: missing or unreadable image")
        return image if gray else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L" if gray else "RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"{path}: missing or unreadable image ({error})") from error


def _template_regex(template: str) -> re.Pattern[str]:
    """``img_{:05d}.jpg`` -> a regex that captures the number."""
    prefix, _, rest = template.partition("{")
    _, _, suffix = rest.partition("}")
    return re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")


def count_numbered_files(folder: Path, template: str, *, start: int = 1) -> int:
    """Number of files ``template.format(start) ..`` in ``folder``; a gap is a ``DataError``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder does not exist")
    pattern = _template_regex(template)
    numbers = sorted(
        int(m.group(1)) for entry in os.scandir(folder) if (m := pattern.match(entry.name))
    )
    if not numbers:
        raise DataError(f"{folder}: no frames named like {template.format(start)}")
    expected = range(start, start + len(numbers))
    if numbers != list(expected):
        present = set(numbers)
        last = max(numbers)
        missing = [n for n in range(start, last + 1) if n not in present]
        names = ", ".join(template.format(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{folder}: missing frames {names}{more} (found {len(numbers)})")
    return len(numbers)


def _check_indices(path: Path, indices: np.ndarray, count: int) -> None:
    if indices.size == 0:
        raise ValueError("read needs at least one frame index")
    if indices.min() < 0 or indices.max() >= count:
        raise IndexError(
            f"{path}: indices must lie in [0, {count}), got {indices.min()}..{indices.max()}"
        )


def flow_stack_fields(path: Path, starts: Sequence[int], length: int, count: int) -> np.ndarray:
    """int64 ``[T, L]``: the fields each stack of ``length`` from ``starts`` reads among
    ``count``, the last field repeated past the end (the ``FlowSource`` rule); bad starts raise
    naming ``path``."""
    first = np.asarray(starts, dtype=np.int64).reshape(-1)
    if length < 1:
        raise ValueError(f"flow stack length must be >= 1, got {length}")
    if first.size == 0:
        raise ValueError("read_flow needs at least one start")
    if first.min() < 0 or first.max() >= count:
        raise IndexError(
            f"{path}: starts must lie in [0, {count}), got {first.min()}..{first.max()}"
        )
    return np.minimum(first[:, None] + np.arange(length)[None, :], count - 1)  # [T, L]


class FrameFolder:
    """A folder of RGB frames ``img_00001.jpg ..`` (template and first number configurable)."""

    def __init__(
        self, path: str | Path, *, template: str = "img_{:05d}.jpg", start: int = 1,
        fps: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.template = template
        self.start = start
        self.fps = fps
        self.num_frames = count_numbered_files(self.path, template, start=start)

    def image_paths(self, indices: Sequence[int]) -> list[Path]:
        """The file of each 0-based index, in order (``[T]``)."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        _check_indices(self.path, wanted, self.num_frames)
        return [self.path / self.template.format(i + self.start) for i in wanted.tolist()]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB ``[T, H, W, 3]`` for 0-based ``indices``."""
        paths = self.image_paths(indices)
        cache = {path: _imread(path, gray=False) for path in dict.fromkeys(paths)}
        return _stack(self.path, [cache[path] for path in paths])

    def __repr__(self) -> str:
        return f"FrameFolder({str(self.path)!r}, num_frames={self.num_frames})"


class FlowFolder:
    """A folder of quantized flow fields ``flow_x_00001.jpg`` / ``flow_y_00001.jpg`` (TSN)."""

    def __init__(
        self, path: str | Path, *, x_template: str = "flow_x_{:05d}.jpg",
        y_template: str = "flow_y_{:05d}.jpg", start: int = 1,
    ) -> None:
        self.path = Path(path)
        self.x_template = x_template
        self.y_template = y_template
        self.start = start
        count_x = count_numbered_files(self.path, x_template, start=start)
        count_y = count_numbered_files(self.path, y_template, start=start)
        if count_x != count_y:
            raise DataError(
                f"{self.path}: {count_x} x flow fields but {count_y} y flow fields"
            )
        self.num_frames = count_x

    def image_paths(self, starts: Sequence[int], length: int) -> list[Path]:
        """The files of the stacks, in order (``[T * L * 2]``: x, then y, of each field)."""
        fields = flow_stack_fields(self.path, starts, length, self.num_frames) + self.start
        return [self.path / template.format(n) for n in fields.reshape(-1).tolist()
                for template in (self.x_template, self.y_template)]

    def read_flow(self, starts: Sequence[int], length: int) -> np.ndarray:
        """uint8 quantized ``[T, L, 2, H, W]``: fields ``start .. start + L - 1`` for each start.

        A stack that would run past the last field repeats the last field (a video shorter
        than L); the starts themselves must be valid indices.
        """
        wanted = flow_stack_fields(self.path, starts, length, self.num_frames)  # [T, L]
        cache: dict[int, np.ndarray] = {}
        for i in np.unique(wanted).tolist():
            n = i + self.start
            x = _imread(self.path / self.x_template.format(n), gray=True)
            y = _imread(self.path / self.y_template.format(n), gray=True)
            if x.shape != y.shape:
                raise DataError(f"{self.path}: x and y flow field {n} differ in size")
            cache[i] = np.stack([x, y])  # [2, H, W]
        fields = [cache[i] for i in wanted.reshape(-1).tolist()]
        stacked = _stack(self.path, fields)  # [T * L, 2, H, W]
        return stacked.reshape(*wanted.shape, *stacked.shape[1:])

    def __repr__(self) -> str:
        return f"FlowFolder({str(self.path)!r}, num_frames={self.num_frames})"


def _stack(path: Path, images: list[np.ndarray]) -> np.ndarray:
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataError(f"{path}: frames of different sizes {sorted(shapes)}")
    return np.stack(images)


def write_frames(folder: str | Path, frames: np.ndarray, *, template: str = "img_{:05d}.jpg",
                 quality: int = 95) -> None:
    """Write uint8 RGB ``[T, H, W, 3]`` as 1-based JPEGs (used by tests and the benchmark)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / template.format(i), quality=quality)


def write_flow(folder: str | Path, flow: np.ndarray, *, quality: int = 95) -> None:
    """Write quantized uint8 ``[T, 2, H, W]`` as 1-based ``flow_x_`` / ``flow_y_`` JPEGs."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, field in enumerate(flow, start=1):
        Image.fromarray(field[0]).save(folder / f"flow_x_{i:05d}.jpg", quality=quality)
        Image.fromarray(field[1]).save(folder / f"flow_y_{i:05d}.jpg", quality=quality)
