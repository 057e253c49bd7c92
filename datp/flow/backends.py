"""Optical flow backends behind one call: ``compute(prev, next) -> flow``.

B frame pairs, H, W image size.

``prev`` and ``next`` are uint8 grayscale ``[B, H, W]``; the flow is float32 ``[B, 2, H, W]``
(x then y, in pixels) such that ``prev(p)`` matches ``next(p + flow(p))``.

- ``torch``: our TV-L1 (:mod:`datp.flow.tvl1`), batched, on CPU or CUDA.
- ``opencv``: OpenCV contrib's ``DualTVL1OpticalFlow`` on CPU with its defaults (the reference).
- ``farneback``, ``dis``: OpenCV's Farneback and DIS (medium preset). Fast but LOWER QUALITY than
  TV-L1; they are not the flow two-stream papers report.

The OpenCV backends need the ``flow`` extra (``pip install 'datp[flow]'``), imported lazily.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from datp.data.frames import quantize_flow
from datp.errors import InputError, MissingDependency
from datp.flow import BACKEND_NAMES
from datp.flow.pixels import gray_resized
from datp.flow.tvl1 import TVL1Params, tvl1_flow

log = logging.getLogger(__name__)


class FlowBackend(Protocol):
    name: str

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        """uint8 ``[B, H, W]`` twice -> float32 ``[B, 2, H, W]`` (x, y in pixels)."""
        ...


def import_cv2():
    """``cv2`` with the contrib ``optflow`` module, or an ImportError naming the extra."""
    try:
        import cv2
    except ImportError as error:
        raise MissingDependency(
            "the OpenCV flow backends need OpenCV contrib: pip install 'datp[flow]' "
            "(opencv-contrib-python-headless)"
        ) from error
    return cv2


def check_pair(prev: np.ndarray, next: np.ndarray) -> None:
    """Validate ``[B, H, W]`` uint8 inputs of one shape."""
    for name, array in (("prev", prev), ("next", next)):
        if not isinstance(array, np.ndarray) or array.ndim != 3 or array.dtype != np.uint8:
            shape = getattr(array, "shape", None)
            raise ValueError(
                f"{name}: expected uint8 [B, H, W], got {type(array).__name__} {shape}"
            )
    if prev.shape != next.shape:
        raise ValueError(f"prev {prev.shape} and next {next.shape} differ in shape")


DEFAULT_BATCH = {"cpu": 1, "cuda": 64}
"""Pairs per batch by device type. On a CPU one pair at a time is fastest (a masked batch runs
until its slowest pair stops: BENCHMARKS.md, "Optical flow"); on a GPU the batch fills the
device (unmeasured here: gpu_checks.sh measures 16 to 256)."""


class TorchTVL1:
    """Our TV-L1 on ``device`` (default: CUDA when present), ``batch_size`` pairs at a time
    (None: :data:`DEFAULT_BATCH` for the device).

    ``compiled``: fuse the inner iterations with ``torch.compile``; None (the default) compiles
    on CUDA only, where fusion pays (on a CPU the eager path is as fast: BENCHMARKS.md). The
    first batch of a process then compiles (logged with its time); inductor's on-disk cache
    (``TORCHINDUCTOR_CACHE_DIR``) shortens that for later processes.
    """

    name = "torch"

    def __init__(
        self,
        *,
        params: TVL1Params | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        compiled: bool | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.params = params or TVL1Params()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size or DEFAULT_BATCH.get(self.device.type, 8)
        self.compiled = self.device.type == "cuda" if compiled is None else compiled
        self._first_batch = True
        self.tvl1_seconds = 0.0
        """Wall time spent in TV-L1 so far (its last check waits for the device): what the
        throughput reports set against the rest of the work."""

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        check_pair(prev, next)
        out = np.empty((prev.shape[0], 2, *prev.shape[1:]), dtype=np.float32)
        pinned = self.device.type == "cuda"  # page-locked host buffers: asynchronous copies
        with torch.inference_mode():
            for start in range(0, prev.shape[0], self.batch_size):
                stop = start + self.batch_size
                a, b = (_to_device(x[start:stop], self.device, pinned) for x in (prev, next))
                flow = self._flow(a, b)
                if pinned:
                    host = torch.empty(flow.shape, dtype=flow.dtype, pin_memory=True)
                    host.copy_(flow, non_blocking=True)
                    torch.cuda.current_stream(self.device).synchronize()
                    flow = host
                out[start:stop] = flow.cpu().numpy()
        return out

    @property
    def pixels_on_device(self) -> bool:
        """Whether :meth:`fields` should be given RGB frames to convert where it computes (a
        GPU), rather than gray frames converted by the caller (a CPU)."""
        return self.device.type != "cpu"

    def fields(
        self, frames: np.ndarray, *, size: tuple[int, int],
        between: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """uint8 flow fields ``[T - 1, 2, h, w]`` from frame i to i + 1 of ``frames``, quantized
        as :func:`datp.data.frames.quantize_flow` (bound 20). ``frames`` are uint8 RGB ``[T, H,
        W, 3]``, converted to gray and resized to ``size`` here (:func:`gray_resized`), or gray
        ``[T, h, w]`` already at ``size``. Conversion, TV-L1 and quantization run on this
        backend's device, ``batch_size`` pairs at a time; ``between()`` is called before each
        batch (it may raise, to stop).

        On CUDA the next batch's frames are copied to the GPU from page-locked memory, in a
        thread on a stream of its own, while this batch's TV-L1 runs; each batch comes back
        once, as uint8 (a quarter of the float32 flow's bytes). On a CPU: the same arithmetic,
        the same files as converting, computing and quantizing one after the other."""
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) < 2 or (
            frames.ndim == 4 and frames.shape[-1] != 3
        ) or (frames.ndim == 3 and tuple(frames.shape[1:]) != tuple(size)):
            raise ValueError(f"expected at least 2 uint8 frames, RGB [T, H, W, 3] or gray "
                             f"[T, {size[0]}, {size[1]}], got {frames.dtype} {frames.shape}")
        pairs = len(frames) - 1
        batches = [(a, min(a + self.batch_size, pairs)) for a in range(0, pairs, self.batch_size)]
        source = torch.from_numpy(frames)
        cuda = self.device.type == "cuda"
        copies = _Copies(source, batches, self.device) if cuda else None
        try:
            with torch.inference_mode():
                out = torch.empty((pairs, 2, *size), dtype=torch.uint8, pin_memory=cuda)
                bad = torch.zeros((), dtype=torch.bool, device=self.device)  # read at the end
                for i, (a, b) in enumerate(batches):
                    if between is not None:
                        between()
                    batch = copies.take(i) if cuda else source[a : b + 1].to(self.device)
                    gray = gray_resized(batch, size) if batch.ndim == 4 else batch  # [n + 1, h, w]
                    flow = self._flow(gray[:-1], gray[1:])  # [n, 2, h, w] float32
                    bad |= ~torch.isfinite(flow).all()
                    out[a:b].copy_(quantize_flow(flow), non_blocking=cuda)  # the one copy back
                if cuda:
                    torch.cuda.current_stream(self.device).synchronize()
        finally:
            if copies is not None:
                copies.close()
        if bool(bad):
            raise ValueError("TV-L1 gave non-finite flow")
        return out.numpy()

    def _flow(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """TV-L1 of one batch, timed into :attr:`tvl1_seconds`."""
        began = time.perf_counter()
        try:
            return self._tvl1(a, b)
        finally:
            self.tvl1_seconds += time.perf_counter() - began

    def _tvl1(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """TV-L1 of one batch; compiled (if asked) until compiling fails once, then eager."""
        if not self.compiled:
            return tvl1_flow(a, b, self.params)
        began = time.perf_counter()
        try:
            flow = tvl1_flow(a, b, self.params, compiled=True)
        except torch.cuda.OutOfMemoryError:  # the batch, not the compiler: eager would not fit
            raise
        except Exception as error:  # no Triton, an old driver, a compiler bug: eager still works
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            log.warning("torch.compile failed (%s: %s); TV-L1 runs eager (slower on a GPU)",
                        type(error).__name__, reason)
            self.compiled = False
            return tvl1_flow(a, b, self.params)
        if self._first_batch:
            log.info("first compiled TV-L1 batch (compiling included): %.1f s",
                     time.perf_counter() - began)
            self._first_batch = False
        return flow


class _Copies:
    """The frames of each batch of :meth:`TorchTVL1.fields` copied to a GPU one batch ahead:
    page-locked, then copied on a :class:`datp.data.device_decode.StreamWorker`'s stream, while
    the caller's stream computes the batch before (the frames of batch i are ``source[a : b +
    1]`` for ``batches[i] = (a, b)``)."""

    def __init__(self, source: torch.Tensor, batches: list[tuple[int, int]],
                 device: torch.device) -> None:
        from datp.data.device_decode import StreamWorker

        self.source, self.batches, self.device = source, batches, device
        self.worker = StreamWorker(device, name="datp-flow-copy")
        self.next = self.worker.submit(self._copy, 0)

    def _copy(self, index: int) -> torch.Tensor:
        a, b = self.batches[index]
        return self.source[a : b + 1].pin_memory().to(self.device, non_blocking=True)

    def take(self, index: int) -> torch.Tensor:
        """Batch ``index``'s frames on the device, usable on the caller's stream; the next
        batch's copy starts now."""
        current = self.next
        if index + 1 < len(self.batches):
            self.next = self.worker.submit(self._copy, index + 1)
        return self.worker.take(current)

    def close(self) -> None:
        self.worker.close()


def _to_device(array: np.ndarray, device: torch.device, pinned: bool) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if pinned:
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=pinned)


class _PerPairOpenCV:
    """Shared loop: OpenCV algorithms take one pair at a time and return ``[H, W, 2]``."""

    name = ""

    def _pair(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        check_pair(prev, next)
        out = np.empty((prev.shape[0], 2, *prev.shape[1:]), dtype=np.float32)
        for i in range(prev.shape[0]):
            out[i] = self._pair(prev[i], next[i]).transpose(2, 0, 1)
        return out


class OpenCVTVL1(_PerPairOpenCV):
    """OpenCV contrib ``DualTVL1OpticalFlow`` with ``params`` (default: OpenCV's defaults)."""

    name = "opencv"

    def __init__(self, *, params: TVL1Params | None = None) -> None:
        cv2 = import_cv2()
        p = params or TVL1Params()
        algorithm = cv2.optflow.DualTVL1OpticalFlow_create()
        # Setters, not keywords: the Python keyword for inner iterations is misspelled.
        algorithm.setTau(p.tau)
        algorithm.setLambda(p.lambda_)
        algorithm.setTheta(p.theta)
        algorithm.setScalesNumber(p.nscales)
        algorithm.setWarpingsNumber(p.warps)
        algorithm.setEpsilon(p.epsilon)
        algorithm.setInnerIterations(p.inner_iterations)
        algorithm.setOuterIterations(p.outer_iterations)
        algorithm.setScaleStep(p.scale_step)
        algorithm.setGamma(p.gamma)
        algorithm.setMedianFiltering(p.median_filtering)
        self._algorithm = algorithm

    def _pair(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        return self._algorithm.calc(prev, next, None)


class Farneback(_PerPairOpenCV):
    """OpenCV Farneback (pyramid 0.5 x 3 levels, window 15): fast, lower quality than TV-L1."""

    name = "farneback"

    def __init__(self) -> None:
        self._cv2 = import_cv2()

    def _pair(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        return self._cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)


class DIS(_PerPairOpenCV):
    """OpenCV DIS, medium preset: fastest, lower quality than TV-L1."""

    name = "dis"

    def __init__(self) -> None:
        cv2 = import_cv2()
        self._algorithm = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def _pair(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        return self._algorithm.calc(prev, next, None)


def build_backend(
    name: str, *, device: str | None = None, batch_size: int | None = None,
    compiled: bool | None = None
) -> FlowBackend:
    """The backend called ``name`` (one of :data:`BACKEND_NAMES`); ``device``, ``batch_size``
    and ``compiled`` (None: on CUDA only) concern ``torch``."""
    if name == "torch":
        return TorchTVL1(device=device, batch_size=batch_size, compiled=compiled)
    if name == "opencv":
        return OpenCVTVL1()
    if name == "farneback":
        return Farneback()
    if name == "dis":
        return DIS()
    raise InputError(f"unknown flow backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
