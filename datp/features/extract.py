"""Feature extraction over a dataset: resumable, sharded, batched over videos and steps.

K units (frames, or flow fields), S steps, W units per step, B network inputs per forward,
C input channels, H, W image size, D feature channels.

Every source (:mod:`datp.features.sources`) gets its steps from the time grid
(:mod:`datp.features.grid`) and its features written as ``OUT/<source without extension>.npy``
with the record beside it (:mod:`datp.features.storage`). How it runs:

- **Decoding** runs in ``decode_threads`` threads, one video each (PyAV releases the GIL while
  it decodes), overlapped with the backbone. A video is read in pieces of at most
  ``piece_units`` units, so a long video is never held whole in memory.
- **Batches over videos and steps**: pieces of consecutive videos are packed until they make
  ``batch_size`` network inputs (frames for an image backbone, clips for a video backbone,
  stacks for a flow backbone), transformed on the device and run through the frozen backbone
  in bf16 autocast on CUDA (``precision="auto"``; float32 on a CPU, where bf16 is slower).
- **Writing** runs in its own thread (:func:`datp.flow.pipeline.staged`).
- **One owner per video**: a video is claimed before it is decoded (:mod:`datp.flow.claims`),
  so shards and commands sharing an output folder extract it once; a finished video (its
  record written) is skipped, so a run that stopped resumes where it was.
- **Bad videos**: a video that cannot be read fails alone, its error in its result; the others
  go on.

An image backbone with W > 1 averages the features of a step's W frames; a video backbone reads
them as one clip; a flow backbone reads one stack of W = L fields.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

import datp
from datp.checkpoint import git_revision
from datp.data.features import FORMAT_NAME, FORMAT_VERSION
from datp.errors import InputError
from datp.features.backbones import FIXED_CLIP_LENGTHS, FrozenBackbone
from datp.features.grid import TimeGrid, VideoGrid, plan_grid
from datp.features.sources import open_units, source_name
from datp.features.storage import (
    STORAGE_DTYPES,
    StorageDtype,
    is_finished,
    output_path,
    record_folder,
    write_features,
)
from datp.flow.claims import Claims
from datp.flow.pipeline import staged

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class FeatureOptions:
    """What ``datp features`` was asked for, besides the backbone."""

    grid: TimeGrid = TimeGrid()
    dtype: StorageDtype = "float16"
    device: str | None = None
    """None: CUDA when there is one, else the CPU."""
    precision: Precision = "auto"
    """auto: bf16 autocast on CUDA, float32 elsewhere."""
    batch_size: int = 64
    """Network inputs (frames, clips or stacks) per forward."""
    decode_threads: int = 1
    decoder: str = "pyav"
    frame_rate: float | None = None
    """The frame rate of frame folders and flow, which do not store one."""
    piece_units: int = 128
    """The most units of one video decoded at once."""

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE_DTYPES:
            raise InputError(f"--dtype must be one of {STORAGE_DTYPES}, got {self.dtype!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if min(self.batch_size, self.decode_threads, self.piece_units) < 1:
            raise InputError("batch size, decode threads and piece units must be >= 1")
        if self.frame_rate is not None and not self.frame_rate > 0:
            raise InputError(f"--frame-rate {self.frame_rate}: must be positive")

    def settings(self, backbone: FrozenBackbone) -> dict:
        """What decides the features' values and layout: recorded for the folder and in every
        file's record. The device, precision and decoder are recorded per file only: like
        ``datp flow``'s compiled kernels, they change values by rounding, not in meaning."""
        grid = self.grid.settings()
        if backbone.kind == "image" and self.grid.window > 1:
            grid["reduce"] = "mean of the window's frame features"
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, **backbone.settings,
                "grid": grid, "dtype": self.dtype}


def resolve_grid(backbone: FrozenBackbone, *, fps: float | None = None,
                 window: int | None = None, stride: int | None = None) -> TimeGrid:
    """The grid for ``backbone`` from what was given: an image backbone reads every frame
    (window 1, stride 1); a video backbone clips of its default length W every W / 4 frames
    (ActionFormer's 16 and 4); a flow backbone its stacks of L fields from every field."""
    name = backbone.settings["backbone"].get("name", "")
    if backbone.kind == "flow":
        length = backbone.clip_length
        if fps is not None:
            raise InputError("--fps: flow features step through flow fields; give --stride")
        if window is not None and window != length:
            raise InputError(f"--window {window}: this flow backbone reads stacks of {length} "
                             "fields (its checkpoint's data.flow_length)")
        return TimeGrid(window=length, stride=stride or 1)
    if backbone.kind == "video":
        window = window or backbone.clip_length
        fixed = FIXED_CLIP_LENGTHS.get(name)
        if fixed is not None and window != fixed:
            raise InputError(f"--window {window}: {name} reads clips of exactly {fixed} frames")
        return TimeGrid(fps=fps, window=window, stride=stride or max(1, window // 4))
    return TimeGrid(fps=fps, window=window or 1, stride=stride or 1)


@dataclass(frozen=True)
class FeatureResult:
    video: str
    """Path relative to the source folder."""
    status: str
    """done | skipped | failed | claimed (another process is extracting it)"""
    steps: int = 0
    units: int = 0
    """Frames (or flow stacks) decoded and run through the backbone."""
    seconds: float = 0.0
    error: str = ""
    holder: str = ""
    """For a claimed video: ``"host pid"`` of the process extracting it."""


@dataclass
class _Video:
    """One video's work, shared by its pieces."""

    video: str
    target: Path
    started: float
    grid: VideoGrid
    num_frames: int
    video_fps: float | None
    features: np.ndarray  # [S, D] float32, filled piece by piece
    error: str = ""


@dataclass
class _Piece:
    """Steps ``[first, stop)`` of a video and the units they read, or a final result."""

    video: _Video | None = None
    first: int = 0
    stop: int = 0
    units: Tensor | None = None  # uint8 [K, C, H, W]
    local: np.ndarray | None = None  # int64 [S, W]: each step's units in ``units``
    last: bool = True
    result: FeatureResult | None = None  # a video finished before the backbone
    error: str = ""
    features: np.ndarray | None = None  # [S, D] float32, from the backbone

    def inputs(self, kind: str) -> int:
        """Network inputs this piece makes."""
        if self.units is None:
            return 0
        return self.units.shape[0] if kind == "image" else self.stop - self.first


class _Extractor:
    def __init__(self, root: Path, out_root: Path, backbone: FrozenBackbone,
                 options: FeatureOptions, claims: Claims, stop: threading.Event) -> None:
        self.root, self.out_root, self.backbone, self.options = root, out_root, backbone, options
        self.claims, self.stop = claims, stop
        self.device = torch.device(options.device or ("cuda" if torch.cuda.is_available()
                                                      else "cpu"))
        self.bf16 = options.precision == "bf16" or (options.precision == "auto"
                                                    and self.device.type == "cuda")
        self.settings = options.settings(backbone)
        self.revision = git_revision()

    # --- decoding (in the decode threads) -----------------------------------------------------

    def produce(self, video: str, put: Callable[[_Piece], bool]) -> None:
        """Put the pieces of ``video`` (the last with ``last=True``), or one final result."""
        target = output_path(self.out_root, source_name(video))
        if is_finished(target):
            put(_Piece(result=FeatureResult(video=video, status="skipped")))
            return
        holder = self.claims.acquire(target)
        if holder is not None:
            put(_Piece(result=FeatureResult(video=video, status="claimed", holder=holder)))
            return
        if is_finished(target):  # finished by its holder before we claimed it
            self.claims.release(target)
            put(_Piece(result=FeatureResult(video=video, status="skipped")))
            return
        work = None
        try:
            with contextlib.closing(self.pieces(video, target)) as pieces:
                for piece in pieces:
                    work = piece.video
                    if not put(piece):
                        return
        except Exception as error:  # one bad video never stops the others
            failed = self._failed(video, error)
            failed.video = work
            put(failed)

    def pieces(self, video: str, target: Path) -> Iterator[_Piece]:
        """The pieces of ``video`` (relative to the root), to be written at ``target``; raises
        what reading it raises."""
        units = open_units(self.root / video, flow=self.backbone.kind == "flow",
                           decoder=self.options.decoder, frame_rate=self.options.frame_rate)
        try:
            grid = plan_grid(self.options.grid, num_frames=units.num_units,
                             frame_times=units.frame_times, fps=units.fps)
            work = _Video(video=video, target=target, started=time.perf_counter(), grid=grid,
                          num_frames=units.num_units, video_fps=units.fps,
                          features=np.empty((grid.num_steps, self.backbone.channels),
                                            np.float32))
            step = self._steps_per_piece()
            for first in range(0, grid.num_steps, step):
                stop = min(first + step, grid.num_steps)
                piece = _Piece(video=work, first=first, stop=stop, last=stop == grid.num_steps)
                windows = grid.windows[first:stop]  # [S, W]
                if self.backbone.kind == "flow":
                    piece.units = units.read_stacks(grid.units[windows[:, 0]], windows.shape[1])
                else:
                    low, high = int(windows.min()), int(windows.max()) + 1
                    piece.units = units.read(grid.units[low:high])
                    piece.local = windows - low
                yield piece
        finally:
            units.close()

    def _steps_per_piece(self) -> int:
        grid = self.options.grid
        if self.backbone.kind == "flow":
            return max(1, self.options.piece_units // grid.window)
        return max(1, (self.options.piece_units - grid.window) // grid.stride + 1)

    @staticmethod
    def _failed(video: str, error: BaseException) -> _Piece:
        log.debug("%s failed:\n%s", video, traceback.format_exc())
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return _Piece(result=FeatureResult(video=video, status="failed", error=message),
                      error=message)

    # --- the backbone (in the pipeline's first thread) ----------------------------------------

    def compute(self, batch: list[_Piece]) -> list[_Piece]:
        working = [p for p in batch if p.units is not None and not p.video.error]
        if not working:
            return batch
        try:
            with torch.inference_mode():
                outputs = self._forward(working)
        except Exception as error:  # a batch the backbone cannot take fails its videos
            log.debug("backbone failed:\n%s", traceback.format_exc())
            for piece in working:
                piece.error = str(error).splitlines()[0] if str(error) else type(error).__name__
            return batch
        for piece, features in zip(working, outputs, strict=True):
            piece.features, piece.units = features, None
        return batch

    def _forward(self, pieces: list[_Piece]) -> list[np.ndarray]:
        kind = self.backbone.kind
        inputs, sizes = [], []
        for piece in pieces:
            x = self.backbone.transform(piece.units.to(self.device))  # [K, C, h, w]
            if kind == "video":  # [S, W, C, h, w] -> [S, C, W, h, w]
                x = x[torch.from_numpy(piece.local).to(self.device)].transpose(1, 2)
            inputs.append(x)
            sizes.append(x.shape[0])
        features = self._network(torch.cat(inputs)).split(sizes)  # [B_i, D] each
        outputs = []
        for piece, feats in zip(pieces, features, strict=True):
            if kind == "image":  # the mean of each step's frames: [S, W, D] -> [S, D]
                feats = feats[torch.from_numpy(piece.local).to(feats.device)].mean(1)
            outputs.append(feats.cpu().numpy())
        return outputs

    def _network(self, inputs: Tensor) -> Tensor:
        """float32 ``[B, D]`` of ``inputs`` ``[B, ...]``, ``batch_size`` at a time."""
        outputs = []
        for chunk in inputs.split(self.options.batch_size):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                outputs.append(self.backbone.module(chunk).float())  # [b, D]
        return torch.cat(outputs)

    # --- writing (in the pipeline's second thread) --------------------------------------------

    def write(self, batch: list[_Piece]) -> list[FeatureResult]:
        results = []
        for piece in batch:
            work = piece.video
            if work is None:  # skipped, claimed, or failed before its first piece
                results.append(piece.result)
                continue
            work.error = work.error or piece.error
            if not work.error:
                work.features[piece.first:piece.stop] = piece.features
            if not piece.last:
                continue
            if not work.error:
                try:
                    write_features(work.target, work.features, self._record(work),
                                   dtype=self.options.dtype)
                except Exception as error:
                    work.error = str(error).splitlines()[0] or type(error).__name__
            if work.error:  # the claim is kept until the run ends: no sibling tries again
                results.append(FeatureResult(video=work.video, status="failed",
                                             error=work.error))
                continue
            self.claims.release(work.target)
            results.append(FeatureResult(
                video=work.video, status="done", steps=work.grid.num_steps,
                units=int(work.grid.units.shape[0]) if self.backbone.kind != "flow"
                else work.grid.num_steps,
                seconds=time.perf_counter() - work.started))
        return results

    def _record(self, work: _Video) -> dict:
        grid = work.grid
        return {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "video": work.video,
            "settings": self.settings, "steps": grid.num_steps,
            "channels": self.backbone.channels, "dtype": self.options.dtype,
            "times": [round(float(t), 6) for t in grid.times],
            "frames": grid.step_frames().tolist(), "duration": round(grid.duration, 6),
            "num_frames": work.num_frames, "video_fps": work.video_fps,
            "decoder": None if self.backbone.kind == "flow" else self.options.decoder,
            "device": str(self.device), "precision": "bf16" if self.bf16 else "fp32",
            "datp_version": datp.__version__, "git_revision": self.revision,
        }


def extract_video(path: str | Path, backbone: FrozenBackbone,
                  options: FeatureOptions) -> tuple[np.ndarray, VideoGrid]:
    """The features float32 ``[S, D]`` of one video (file, frame folder or stored flow) and its
    grid, in memory, by the same code as :func:`extract_features` (nothing written or claimed):
    what a prediction from a video needs. Raises ``DataError`` for a video it cannot read."""
    path = Path(path)
    extractor = _Extractor(path.parent, path.parent, backbone, options, Claims(),
                           threading.Event())
    backbone.to(extractor.device)
    with contextlib.closing(extractor.pieces(path.name, path)) as pieces:
        for piece in pieces:
            with torch.inference_mode():
                features = extractor._forward([piece])[0]
            piece.video.features[piece.first:piece.stop] = features
    return piece.video.features, piece.video.grid


def _ordered_pieces(videos: Iterable[str], produce: Callable, *, threads: int,
                    stop: threading.Event, depth: int = 2) -> Iterator[_Piece]:
    """The pieces of ``videos`` in order, ``threads`` videos decoded at once, at most ``depth``
    pieces of each waiting. The decode threads end with the generator, or at ``stop``."""
    pending: deque[queue.Queue] = deque()
    remaining = iter(videos)
    ended = threading.Event()

    def start(pool: ThreadPoolExecutor) -> None:
        video = next(remaining, None)
        if video is None:
            return
        pieces: queue.Queue = queue.Queue(maxsize=depth)

        def put(piece: _Piece) -> bool:
            while not (stop.is_set() or ended.is_set()):
                try:
                    pieces.put(piece, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run() -> None:
            try:
                produce(video, put)
            except BaseException as error:  # a bug: reported as the video's failure
                put(_Extractor._failed(video, error))

        pool.submit(run)
        pending.append(pieces)

    with ThreadPoolExecutor(threads, thread_name_prefix="features-decode") as pool:
        try:
            for _ in range(threads):
                start(pool)
            while pending and not stop.is_set():
                try:
                    piece = pending[0].get(timeout=0.1)
                except queue.Empty:
                    continue
                yield piece
                if piece.last:
                    pending.popleft()
                    start(pool)
        finally:
            ended.set()  # the producers stop putting; the pool's threads end


def _batches(pieces: Iterator[_Piece], *, batch_size: int, kind: str) -> Iterator[list[_Piece]]:
    """Pieces packed into batches of about ``batch_size`` network inputs."""
    batch: list[_Piece] = []
    inputs = 0
    for piece in pieces:
        batch.append(piece)
        inputs += piece.inputs(kind)
        if inputs >= batch_size:
            yield batch
            batch, inputs = [], 0
    if batch:
        yield batch


def extract_features(
    root: str | Path, out_root: str | Path, videos: list[str], backbone: FrozenBackbone,
    options: FeatureOptions, *, stop: threading.Event | None = None,
) -> Iterator[FeatureResult]:
    """Extract the features of ``videos`` (relative to ``root``) into ``out_root``, yielding
    one result per video in order.

    Settings that clash with those recorded in ``out_root``, and two sources whose features
    would go to one place (``x.avi`` and ``x.mp4``), raise ``InputError`` here, before
    anything is extracted.
    """
    root, out_root = Path(root), Path(out_root)
    by_output: dict[str, str] = {}
    for video in videos:
        other = by_output.setdefault(source_name(video), video)
        if other != video:
            raise InputError(f"{root / video} and {root / other} would both write their "
                             f"features at {output_path(out_root, source_name(video))}; "
                             "rename one")
    record_folder(out_root, options.settings(backbone))
    return _extract(root, out_root, videos, backbone, options, stop or threading.Event())


def _extract(root: Path, out_root: Path, videos: list[str], backbone: FrozenBackbone,
             options: FeatureOptions, stop: threading.Event) -> Iterator[FeatureResult]:
    pending = [v for v in videos if not is_finished(output_path(out_root, source_name(v)))]
    waiting = set(pending)
    for video in videos:
        if video not in waiting:
            yield FeatureResult(video=video, status="skipped")
    if not pending:
        return
    claims = Claims()
    extractor = _Extractor(root, out_root, backbone, options, claims, stop)
    backbone.to(extractor.device)
    pieces = _ordered_pieces(pending, extractor.produce, threads=options.decode_threads,
                             stop=stop)
    batches = _batches(pieces, batch_size=options.batch_size, kind=backbone.kind)
    try:
        for results in staged(batches, [extractor.compute, extractor.write], depth=1,
                              stop=stop):
            yield from results
    finally:
        stop.set()
        for generator in (batches, pieces):  # their threads have ended: close them here
            with contextlib.suppress(ValueError):
                generator.close()
        claims.release_all()
