"""Flow extraction over a dataset: resumable, sharded, parallel over videos.

T frames, H, W image size.

Every video file under the dataset folder (recursively, any extension PyAV reads) gets its flow
written under the output folder at the same relative path without the extension (a TSN folder,
or ``<video>.flow`` in the compact format). Frames are converted to grayscale, resized (340x256
by default, as TSN, or to a given short side) and paired with step 1, so a video of T frames
gives T - 1 flow fields. A video with fewer than 2 frames is an error (listed in the report).
With the torch backend on a GPU that pixel work, TV-L1 and the quantization all run on the GPU
and only uint8 fields come back (:meth:`datp.flow.backends.TorchTVL1.fields`); elsewhere the
frames are converted on the CPU while the previous video's flow is computed.

A video whose output is finished (see :mod:`datp.flow.storage`) is skipped; a failure in one
video is recorded and the others go on, and its temporary output is removed (as are those of
earlier crashed runs, when the video is extracted again). A video that decodes to fewer frames
than its container declares (a truncated file) is extracted from what is there and its result
carries a warning with both counts.

Each process whose flow runs on a GPU runs a pipeline (:mod:`datp.flow.pipeline`): while the
flow of one video is computed, the next one is decoded and the previous one written, in
threads, with at most one video waiting between two stages (on a CPU, ``--pipeline`` asks for
it: there the threads take cores from TV-L1). Each video is claimed before it is decoded
(:mod:`datp.flow.claims`), so processes sharing an output folder (worker processes, shards,
commands started twice) extract it once.

Worker processes (``jobs`` > 1) each go through the whole list, claims sharing it out; on a host
with several CUDA devices worker i uses ``cuda:(i % device_count)``, and all share inductor's
on-disk cache. They end with the process that started them, even when it is killed
(``kill -9``): each watches its parent and exits within :data:`PARENT_POLL_SECONDS` of it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datp.choices import MAX_SHORT_SIDE
from datp.data.frames import FLOW_BOUND, quantize_flow
from datp.data.video import VIDEO_EXTENSIONS, VideoReader
from datp.data.walk import walk
from datp.errors import DataError, InputError
from datp.flow.backends import FlowBackend, build_backend
from datp.flow.claims import Claims
from datp.flow.pipeline import Done, staged
from datp.flow.pixels import to_gray_resized
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
    pipelined: bool | None = None
    """Overlap decoding, flow and writing in threads (None: when the flow runs on a GPU, where
    the host is otherwise idle; on a CPU the threads compete with TV-L1 for the cores)."""

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
        if self.short_side is not None and not 16 <= self.short_side <= MAX_SHORT_SIDE:
            raise InputError(f"--short-side {self.short_side}: the short side must lie in "
                             f"[16, {MAX_SHORT_SIDE}]")


@dataclass(frozen=True)
class VideoResult:
    video: str
    """Path relative to the dataset folder."""
    status: str
    """done | skipped | failed | claimed (another process is extracting it)"""
    pairs: int = 0
    seconds: float = 0.0
    """From the start of its decoding to its flow written."""
    flow_seconds: float = 0.0
    """Of ``seconds``, computing the flow."""
    error: str = ""
    holder: str = ""
    """For a claimed video: ``"host pid"`` of the process extracting it."""
    warning: str = ""
    """Set for a video that was extracted but looks damaged (a truncated file)."""


def find_videos(root: str | Path) -> list[str]:
    """Relative paths of the video files under ``root``, sorted; symlinked folders and files
    are followed (each real folder once: a loop ends), as training reads through them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    return sorted(
        (folder / name).relative_to(root).as_posix()
        for folder, _, files in walk(root)
        for name in files
        if Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")
        and (folder / name).is_file()  # not a broken link
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


def decode_rgb(path: Path) -> tuple[np.ndarray, int | None]:
    """uint8 RGB frames ``[T, H, W, 3]`` of the video at ``path`` (at least 2), and the number of
    frames its container declares (None when it does not say)."""
    with VideoReader(path) as reader:
        frames = reader.read_all()  # [T, H, W, 3]
        declared = reader.declared_frames
    if frames.shape[0] < 2:
        raise DataError(f"{path}: {frames.shape[0]} frame(s); flow needs at least 2")
    return frames, declared


def truncation_warning(frames: int, declared: int | None) -> str:
    """The warning for a video that decoded ``frames`` of the ``declared`` ones ("" if none)."""
    if declared is None or declared <= frames:  # more frames than declared: a common, harmless
        return ""  # header error
    return (
        f"truncated? the container declares {declared} frames, {frames} decoded "
        f"({frames - 1} flow fields instead of {declared - 1})"
    )


Decoder = Callable[[Path], "tuple[np.ndarray, int | None]"]
"""``decoder(path) -> (RGB frames [T, H, W, 3] uint8, declared frame count or None)``."""


@dataclass
class _Work:
    """One video on its way through the stages."""

    video: str
    target: Path
    started: float
    frames: np.ndarray | None = None
    """uint8: RGB ``[T, H, W, 3]`` for a backend that converts on its device, else gray
    ``[T, h, w]`` at ``size``."""
    size: tuple[int, int] = (0, 0)
    declared: int | None = None
    fields: np.ndarray | None = None  # [T - 1, 2, h, w] uint8, quantized
    flow_seconds: float = 0.0


def flow_fields(backend: FlowBackend, frames: np.ndarray, *, size: tuple[int, int],
                chunk: int, between: Callable[[], None] | None = None) -> np.ndarray:
    """uint8 quantized flow ``[T - 1, 2, h, w]`` from frame i to i + 1 of ``frames`` (uint8 gray
    ``[T, h, w]`` at ``size``, or RGB ``[T, H, W, 3]`` for a backend with ``fields``, which
    converts them where it computes). ``between()`` runs before each batch of ``chunk`` pairs."""
    if hasattr(backend, "fields"):
        return backend.fields(frames, size=size, between=between)
    out = np.empty((frames.shape[0] - 1, 2, *frames.shape[1:]), dtype=np.uint8)
    for start in range(0, out.shape[0], chunk):
        if between is not None:
            between()
        stop = min(start + chunk, out.shape[0])
        flow = backend.compute(frames[start:stop], frames[start + 1:stop + 1])
        if not np.isfinite(flow).all():
            raise ValueError(f"{backend.name} gave non-finite flow")
        out[start:stop] = quantize_flow(flow)
    return out


class _Stages:
    """The three stages of one video: decode, flow, write (run one after the other, or
    overlapped by :func:`datp.flow.pipeline.staged`). A video is claimed in the first stage and
    its claim released when its result is known; a failure becomes the video's result."""

    def __init__(self, root: Path, out_root: Path, backend: FlowBackend, options: ExtractOptions,
                 claims: Claims, stop: threading.Event, decode: Decoder = decode_rgb) -> None:
        self.root, self.out_root, self.backend, self.options = root, out_root, backend, options
        self.claims, self.stop, self.decoder = claims, stop, decode
        self.chunk = getattr(backend, "batch_size", 8)
        """Pairs per backend call: a stop is seen between two calls."""

    def all(self) -> list:
        return [self.decode, self.flow, self.write]

    def _failed(self, work: _Work, error: BaseException) -> Done:
        # The claim is kept until the run ends: no sibling process tries the video again.
        log.debug("%s failed:\n%s", work.video, traceback.format_exc())
        message = str(error) or type(error).__name__
        return Done(VideoResult(video=work.video, status="failed", error=message))

    def decode(self, video: str) -> _Work | Done:
        target = output_path(self.out_root, _strip(video), self.options.fmt)
        work = _Work(video=video, target=target, started=time.perf_counter())
        if is_finished(target, self.options.fmt):
            return Done(VideoResult(video=video, status="skipped"))
        holder = self.claims.acquire(target)
        if holder is not None:
            return Done(VideoResult(video=video, status="claimed", holder=holder))
        if is_finished(target, self.options.fmt):  # finished by its holder before we claimed it
            self.claims.release(target)
            return Done(VideoResult(video=video, status="skipped"))
        try:
            frames, work.declared = self.decoder(self.root / video)
            work.size = target_size(*frames.shape[1:3], self.options.short_side)
            # A GPU backend converts on the device; else here, beside the flow of the last video.
            on_device = getattr(self.backend, "pixels_on_device", False)
            work.frames = frames if on_device else to_gray_resized(frames, work.size)
        except Exception as error:  # one bad video never stops the others
            return self._failed(work, error)
        return work

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise InterruptedError("stopped")

    def flow(self, work: _Work) -> _Work | Done:
        try:
            began = time.perf_counter()
            work.fields = flow_fields(self.backend, work.frames, size=work.size,
                                      chunk=self.chunk, between=self._check_stop)
            work.flow_seconds = time.perf_counter() - began
        except Exception as error:
            return self._failed(work, error)
        work.frames = None
        return work

    def write(self, work: _Work) -> VideoResult | Done:
        try:
            if self.options.fmt == "jpeg":
                info = {"backend": self.backend.name, "video": work.video}
                write_jpeg_flow(work.target, work.fields, info=info)
            else:
                WRITERS[self.options.fmt](work.target, work.fields)
        except Exception as error:
            return self._failed(work, error)
        self.claims.release(work.target)
        pairs = int(work.fields.shape[0])
        return VideoResult(
            video=work.video,
            status="done",
            pairs=pairs,
            seconds=time.perf_counter() - work.started,
            flow_seconds=work.flow_seconds,
            warning=truncation_warning(pairs + 1, work.declared),
        )


def extract_video(
    root: Path, out_root: Path, video: str, backend: FlowBackend, options: ExtractOptions
) -> VideoResult:
    """Extract one video, its stages one after the other; never raises for a bad video (the
    error is in the result)."""
    claims = Claims()
    try:
        return _serial(_Stages(root, out_root, backend, options, claims, threading.Event()),
                       video)
    finally:
        claims.release_all()


def _serial(stages: _Stages, video: str) -> VideoResult:
    value = video
    for stage in stages.all():
        value = stage(value)
        if isinstance(value, Done):
            return value.result
    return value


def run_videos(
    root: Path, out_root: Path, videos: list[str], backend: FlowBackend, options: ExtractOptions,
    *, pipelined: bool | None = None, stop: threading.Event | None = None,
    decode: Decoder = decode_rgb,
) -> Iterator[VideoResult]:
    """Extract ``videos`` in this process with ``backend``, yielding one result per video in
    order. ``pipelined`` (None: ``options.pipelined``, whose None means on CUDA only): decoding
    of the next video, the flow of this one and writing of the previous one overlap (threads, at
    most one video waiting between two stages); else each video goes through its stages before
    the next starts. ``decode``: how a video's RGB frames are read (:data:`Decoder`; benchmarks
    read frame folders where PyAV is missing). Claims are released at the end."""
    stop = stop if stop is not None else threading.Event()
    claims = Claims()
    stages = _Stages(root, out_root, backend, options, claims, stop, decode)
    if pipelined is None:
        pipelined = options.pipelined
    if pipelined is None:
        pipelined = getattr(getattr(backend, "device", None), "type", "cpu") == "cuda"
    try:
        if pipelined:
            yield from staged(videos, stages.all(), depth=1, stop=stop)
        else:
            for video in videos:
                yield _serial(stages, video)
    finally:
        stop.set()
        claims.release_all()


def _strip(video: str) -> str:
    suffix = Path(video).suffix
    return video[: -len(suffix)] if suffix else video


def _build(options: ExtractOptions, device: str | None = None) -> FlowBackend:
    return build_backend(
        options.backend,
        device=device or options.device,
        batch_size=options.batch_size,
        compiled=options.compiled,
    )


def device_for_job(device: str | None, index: int, count: int | None = None) -> str | None:
    """The device of worker process ``index``: on a host with several CUDA devices (``count``;
    None: ask torch) and ``device`` None or "cuda", ``cuda:(index % count)``; else ``device``."""
    if device not in (None, "cuda"):
        return device
    count = torch.cuda.device_count() if count is None else count
    return f"cuda:{index % count}" if count > 1 else device


def inductor_cache_dir() -> str | None:
    """The folder of inductor's on-disk cache that this process would use (handed to worker
    processes so that they all share one, and a kernel compiled by one is read by the rest)."""
    found = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if found:
        return found
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
    except ImportError:  # another torch layout: each worker finds the default itself
        return None
    return cache_dir()


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


def _worker(index: int, root: Path, out_root: Path, videos: list[str], options: ExtractOptions,
            parent: int, cache_dir: str | None, results, stop) -> None:
    """Worker process ``index``: every video of ``videos`` that no other process has claimed;
    its results go to the queue ``results``, then ``("end", index, error)`` (error: "" or why
    the worker stopped, e.g. its backend could not be built)."""
    exit_with_parent(parent)
    if cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    torch.set_num_threads(options.threads)
    halt = threading.Event()

    def relay() -> None:  # polled: a process blocked in stop.wait() would hang stop.set()
        while not stop.is_set():
            time.sleep(PARENT_POLL_SECONDS)
        halt.set()

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()
    error = ""
    try:
        backend = _build(options, device_for_job(options.device, index))
        for result in run_videos(root, out_root, videos, backend, options, stop=halt):
            results.put(result)
    except KeyboardInterrupt:
        pass
    except Exception as failure:  # told to the parent, which reports the videos left
        error = f"{type(failure).__name__}: {failure}"
    finally:
        results.put(("end", index, error))


def extract_dataset(
    root: str | Path,
    out_root: str | Path,
    videos: list[str],
    options: ExtractOptions,
    *,
    jobs: int = 1,
) -> Iterator[VideoResult]:
    """Extract ``videos`` (relative to ``root``), yielding one result per video as it ends.

    ``jobs`` > 1 runs that many worker processes (spawned, each with its own backend, on CUDA
    device ``i % device_count`` on a host with several); 1 runs in this process. Each process
    overlaps decoding, flow and writing as ``options.pipelined`` says (see :func:`run_videos`).

    Videos are claimed one by one (:mod:`datp.flow.claims`), so processes working on one output
    folder at once (worker processes, shards, or other ``datp flow`` commands) each extract a
    video once; a video that another command holds has the status "claimed".

    Settings that clash with those recorded in ``out_root``, and two videos whose flow would go
    to one place (``x.avi`` and ``x.mp4``), raise ``InputError`` here, before anything is
    extracted (not at the first result).
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
        yield from run_videos(root, out_root, pending, _build(options), options)
        return
    yield from _in_workers(root, out_root, pending, options, jobs)


def _in_workers(
    root: Path, out_root: Path, videos: list[str], options: ExtractOptions, jobs: int
) -> Iterator[VideoResult]:
    """Every worker goes through all ``videos``; claims share them out. One result per video:
    its extractor's, else (found finished or claimed by a sibling) the best one seen."""
    context = multiprocessing.get_context("spawn")
    results, stop = context.Queue(), context.Event()
    workers = [
        context.Process(
            target=_worker, name=f"datp-flow-{i}",
            args=(i, root, out_root, videos, options, os.getpid(), inductor_cache_dir(),
                  results, stop),
        )
        for i in range(min(jobs, len(videos)))
    ]
    for worker in workers:
        worker.start()
    pids = {f"{socket.gethostname()} {w.pid}" for w in workers}
    reported: set[str] = set()
    seen: dict[str, VideoResult] = {}
    ended: set[int] = set()
    died = ""
    try:
        while len(ended) < len(workers):
            try:
                result = results.get(timeout=PARENT_POLL_SECONDS)
            except queue.Empty:
                for i, worker in enumerate(workers):
                    if i not in ended and not worker.is_alive() and worker.exitcode != 0:
                        ended.add(i)  # died without its end message (e.g. out of memory)
                        died = f"worker failed: exit code {worker.exitcode}"
                continue
            if isinstance(result, tuple):
                ended.add(result[1])
                died = f"worker failed: {result[2]}" if result[2] else died
            elif result.status in ("done", "failed"):
                if result.video not in reported:  # a sibling that ended released its claims:
                    reported.add(result.video)  # another may have tried a failed video again
                    yield result
            elif not (result.status == "claimed" and result.holder in pids):
                seen.setdefault(result.video, result)
        for video in videos:
            if video in reported:
                continue
            yield seen.get(video) or VideoResult(video=video, status="failed",
                                                 error=died or "no worker extracted it")
    finally:  # also when the caller stops early (Ctrl-C): no video starts after that
        stop.set()
        while any(worker.is_alive() for worker in workers):
            try:  # a worker ends only once what it put in the queue has been read
                while True:
                    results.get_nowait()
            except queue.Empty:
                pass
            for worker in workers:
                worker.join(timeout=0.1)
