"""Flow extraction over a dataset: resumable, sharded, parallel over videos.

T frames, H, W image size.

Every video file under the dataset folder (recursively, any extension PyAV reads) gets its flow
written under the output folder at the same relative path without the extension (a TSN folder,
or ``<video>.flow`` in the compact format). Frames are converted to grayscale, resized (340x256
by default, as TSN, or to a given short side) and paired with step 1, so a video of T frames
gives T - 1 flow fields. A video with fewer than 2 frames is an error (listed in the report).

A video whose output is finished (see :mod:`datp.flow.storage`) is skipped; a failure in one
video is recorded and the others go on, and its temporary output is removed (as are those of
earlier crashed runs, when the video is extracted again). A video that decodes to fewer frames
than its container declares (a truncated file) is extracted from what is there and its result
carries a warning with both counts.

Worker processes (``jobs`` > 1) end with the process that started them, even when it is killed
(``kill -9``): each watches its parent and exits within :data:`PARENT_POLL_SECONDS` of it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datp.data.errors import DataError
from datp.data.frames import FLOW_BOUND
from datp.data.video import VIDEO_EXTENSIONS, VideoReader
from datp.errors import InputError
from datp.flow.backends import FlowBackend, build_backend
from datp.flow.storage import (
    FORMATS,
    WRITERS,
    is_finished,
    output_path,
    record_settings,
    write_jpeg_flow,
)

log = logging.getLogger(__name__)

TSN_SIZE = (256, 340)
"""(height, width) of TSN's frames."""


@dataclass(frozen=True)
class ExtractOptions:
    """What ``datp flow`` was asked for."""

    backend: str = "torch"
    fmt: str = "jpeg"
    short_side: int | None = None
    """None: resize to 340x256 (TSN); else keep the aspect ratio with this short side."""
    device: str | None = None
    batch_size: int | None = None
    """Pairs per torch batch; None: the backend's default for its device."""
    threads: int = 1
    """torch CPU threads per worker process."""
    compiled: bool | None = None
    """torch backend: fuse with torch.compile (None: on CUDA only). Not a setting of the flow's
    values: compiled and eager agree to float rounding."""

    def settings(self) -> dict:
        """What decides the flow's values and layout (recorded beside it, and in the flow
        stream's checkpoints, so that prediction computes flow the same way)."""
        return {
            "backend": self.backend,
            "format": self.fmt,
            "short_side": self.short_side,  # None: 340x256
            "bound": FLOW_BOUND,
        }

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise InputError(f"--format must be one of {FORMATS}, got {self.fmt!r}")
        if self.short_side is not None and self.short_side < 16:
            raise InputError(f"--short-side {self.short_side}: the short side must be >= 16")


@dataclass(frozen=True)
class VideoResult:
    video: str
    """Path relative to the dataset folder."""
    status: str
    """done | skipped | failed"""
    pairs: int = 0
    seconds: float = 0.0
    error: str = ""
    warning: str = ""
    """Set for a video that was extracted but looks damaged (a truncated file)."""


def find_videos(root: str | Path) -> list[str]:
    """Relative paths of the video files under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
    )


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as error:
        raise InputError(f"--shard {text}: expected i/n with integers, e.g. 0/4") from error
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: i/n needs 0 <= i < n")
    return index, count


def shard(videos: list[str], index: int, count: int) -> list[str]:
    """Every ``count``-th video from ``index``: shards are disjoint and cover the list."""
    return videos[index::count]


def target_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) to resize to: TSN's 340x256, or ``short_side`` keeping the aspect."""
    if short_side is None:
        return TSN_SIZE
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def to_gray_resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB ``[T, H, W, 3]`` -> uint8 gray ``[T, h, w]`` (BT.601 luma, bilinear resize)."""
    rgb = torch.from_numpy(frames).float()
    gray = rgb @ torch.tensor([0.299, 0.587, 0.114])  # [T, H, W]
    if tuple(gray.shape[-2:]) != size:
        gray = F.interpolate(gray[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return gray.round_().clamp_(0, 255).to(torch.uint8).numpy()


def video_flow(
    path: Path, backend: FlowBackend, short_side: int | None
) -> tuple[np.ndarray, int | None]:
    """Float32 flow ``[T - 1, 2, h, w]`` of the video at ``path``, and the number of frames its
    container declares (None when it does not say)."""
    with VideoReader(path) as reader:
        frames = reader.read_all()  # [T, H, W, 3]
        declared = reader.declared_frames
    if frames.shape[0] < 2:
        raise DataError(f"{path}: {frames.shape[0]} frame(s); flow needs at least 2")
    gray = to_gray_resized(frames, target_size(*frames.shape[1:3], short_side))
    return backend.compute(gray[:-1], gray[1:]), declared


def truncation_warning(frames: int, declared: int | None) -> str:
    """The warning for a video that decoded ``frames`` of the ``declared`` ones ("" if none)."""
    if declared is None or declared <= frames:  # more frames than declared: a common, harmless
        return ""  # header error
    return (
        f"truncated? the container declares {declared} frames, {frames} decoded "
        f"({frames - 1} flow fields instead of {declared - 1})"
    )


def extract_video(
    root: Path, out_root: Path, video: str, backend: FlowBackend, options: ExtractOptions
) -> VideoResult:
    """Extract one video; never raises for a bad video (the error is in the result)."""
    target = output_path(out_root, _strip(video), options.fmt)
    if is_finished(target, options.fmt):
        return VideoResult(video=video, status="skipped")
    start = time.perf_counter()
    try:
        flow, declared = video_flow(root / video, backend, options.short_side)
        if options.fmt == "jpeg":
            info = {"backend": backend.name, "video": video}
            write_jpeg_flow(target, flow, info=info)
        else:
            WRITERS[options.fmt](target, flow)
    except Exception as error:  # one bad video never stops the others
        log.debug("%s failed:\n%s", video, traceback.format_exc())
        message = str(error) or type(error).__name__
        return VideoResult(video=video, status="failed", error=message)
    return VideoResult(
        video=video,
        status="done",
        pairs=int(flow.shape[0]),
        seconds=time.perf_counter() - start,
        warning=truncation_warning(int(flow.shape[0]) + 1, declared),
    )


def _strip(video: str) -> str:
    suffix = Path(video).suffix
    return video[: -len(suffix)] if suffix else video


def _build(options: ExtractOptions) -> FlowBackend:
    return build_backend(
        options.backend,
        device=options.device,
        batch_size=options.batch_size,
        compiled=options.compiled,
    )


PARENT_POLL_SECONDS = 0.5
"""How often a worker process checks that the process that started it is still alive."""


def exit_with_parent(parent: int, *, interval: float = PARENT_POLL_SECONDS) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once its parent, whose pid
    is ``parent``, has gone: an orphan is re-parented, so ``os.getppid()`` changes. Polling, not
    ``PR_SET_PDEATHSIG``: that signal follows the parent *thread* that started the process,
    which for a process pool need not live as long as the parent process."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


# Worker processes build their backend once; held in the worker process only.
_worker_backend: FlowBackend | None = None


def _init_worker(options: ExtractOptions, parent: int) -> None:
    global _worker_backend
    exit_with_parent(parent)
    torch.set_num_threads(options.threads)
    _worker_backend = _build(options)


def _run_in_worker(root: Path, out_root: Path, video: str, options: ExtractOptions) -> VideoResult:
    assert _worker_backend is not None
    return extract_video(root, out_root, video, _worker_backend, options)


def extract_dataset(
    root: str | Path,
    out_root: str | Path,
    videos: list[str],
    options: ExtractOptions,
    *,
    jobs: int = 1,
) -> Iterator[VideoResult]:
    """Extract ``videos`` (relative to ``root``), yielding one result per video as it ends.

    ``jobs`` > 1 runs that many worker processes (spawned, each with its own backend);
    1 runs in this process. Settings that clash with those recorded in ``out_root``, and two
    videos whose flow would go to one place (``x.avi`` and ``x.mp4``), raise ``InputError``
    here, before anything is extracted (not at the first result).
    """
    root, out_root = Path(root), Path(out_root)
    by_output: dict[str, str] = {}
    for video in videos:
        other = by_output.setdefault(_strip(video), video)
        if other != video:
            raise InputError(f"{root / video} and {root / other} would both write the flow at "
                             f"{output_path(out_root, _strip(video), options.fmt)}; rename one")
    record_settings(out_root, options.settings())
    return _extract(root, out_root, videos, options, jobs)


def _extract(
    root: Path, out_root: Path, videos: list[str], options: ExtractOptions, jobs: int
) -> Iterator[VideoResult]:
    pending = [
        v
        for v in videos
        if not is_finished(output_path(out_root, _strip(v), options.fmt), options.fmt)
    ]
    waiting = set(pending)
    for video in videos:
        if video not in waiting:
            yield VideoResult(video=video, status="skipped")
    if not pending:
        return
    if jobs <= 1:
        backend = _build(options)
        for video in pending:
            yield extract_video(root, out_root, video, backend, options)
        return
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(options, os.getpid()),
    )
    try:
        futures = {pool.submit(_run_in_worker, root, out_root, v, options): v for v in pending}
        for future in concurrent.futures.as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # a worker that died (e.g. out of memory)
                yield VideoResult(
                    video=futures[future], status="failed", error=f"worker failed: {error}"
                )
    finally:  # also when the caller stops early (Ctrl-C): no video starts after that
        pool.shutdown(wait=True, cancel_futures=True)
