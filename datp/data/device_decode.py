"""Decoding JPEG frame and flow folders on the model's device, a batch at a time.

B videos, N segments, L flow fields per segment, D channels (3 RGB; 2L flow, x and y
interleaved), H, W frame size, S image side, V views (test crops).

With ``data.decode = "device"`` the loader workers only read each clip's JPEG files as bytes
(:func:`encode_clip`) and draw the clip's random crop and flip from the item's generator, in the
order the CPU path draws them, so a seed gives the same crops either way. The item's ``inputs``
is then an :class:`EncodedClip` instead of a tensor; :func:`datp.data.dataset.collate_videos`
gathers those into an :class:`EncodedBatch`, and :func:`decode_batch` turns that into the uint8
batch ``[B, N, D, S, S]`` (training) or ``[B, V, N, D, S, S]`` (testing) on the device: one
``torchvision.io.decode_jpeg`` call for every image of the batch (nvjpeg on CUDA,
libjpeg-turbo on the CPU), then crops, resizes and flips on whole batches. The result is not
normalized: :func:`datp.engine.inference.forward_batch` normalizes uint8 inputs on the device.

Sources that are not JPEG folders (video files, ``.flow`` / ``.zflow`` files) are decoded in the
worker as before and travel as uint8 frames; only their crop moves to the device.

**The CUDA decode race, and why the decoder gets memory nothing queued can read.**
torchvision's CUDA ``decode_jpeg`` allocates its outputs from PyTorch's caching allocator on the
caller's current stream, then has nvJPEG write them from a stream of its own that never waits for
the caller's (pytorch/vision PR #9606); and nvJPEG's hardware engine writes its outputs before
work already queued on the stream it is given has run (torchcodec PR #1634), so ordering the
streams would not be enough either. The allocator hands out a block as soon as it is freed on
its stream, because later use on that stream is ordered after the kernels still queued to read
it: the decoder can be given a block that the previous training step's kernels have not read
yet, and overwrite it (134 corrupted iterations of 200 in the threads' reproduction,
``benchmarks/decode_race.py``): wrong images or gradients, no error. Two rules fix it by
construction, whatever nvJPEG orders or not:

1. :func:`decode_jpegs` first waits on the host for the stream its outputs are allocated on
   (torchcodec's fix): when the decoder runs, no work queued on that stream can still read a
   block the allocator gives it. Blocks another stream still uses are kept back by the allocator
   itself (``record_stream``). torchvision also waits for its own stream before returning, so
   the outputs are whole when the call returns.
2. That barrier would make the training thread wait for the whole queued step before every
   decode. :func:`decode_ahead` decodes the next batch in a thread of its own, on a CUDA stream
   whose blocks only that thread allocates, while the caller runs the current one: the barrier
   waits only for that stream's own (decode and crop) work; the caller's stream waits for an
   event recorded after the batch, and ``record_stream`` keeps the batch's blocks from the
   decode stream until the caller's kernels that read them have run. The batches and their
   order are the loader's, each decoded by the same code: nothing that is learned changes.

The alternative of a decode stream without the barrier is not safe: the decode thread's own
crops and resizes, queued on that stream, read blocks it freed, which the next decode could get.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datp.choices import DecodePlace
from datp.data import functional as F
from datp.data.transforms import CropDraw, EvalTransform, TrainTransform
from datp.errors import DataError

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame, any coding


def decodes_on_device(decode: str, *, device: str, jpeg: bool) -> bool:
    """Whether clips are decoded on the model's device: ``decode`` is ``workers``, ``device``
    or ``auto``: the device when it is a GPU (``device`` "cuda", "cuda:N", or "auto" with CUDA
    present) and the data are JPEG folders (``source = "frames"``, or flow), the workers
    otherwise.

    Why: on a GPU, torchvision decodes a list of baseline JPEGs with nvjpeg's hardware backend
    (the JPEG engines of an A100 or H100, not the SMs the training step runs on): about 17,700
    images/s on an H100, 1,770 RGB clips/s at N = 10, above the about 1,090 clips/s a bf16
    ResNet34 step eats, however few CPU cores the host has; the workers decode 157 RGB clips/s
    per process with OpenCV (about 16 flow clips/s: 100 JPEGs each), so a GPU needs 7 of them
    for RGB and some 70 for flow (earlier H100-host figures). On a CPU the device path runs the same
    libjpeg-turbo decode in the main process, one clip after another, and measured slower
    than the workers (benchmarks/loading.py)."""
    if decode not in DECODE_PLACES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_PLACES)}, got {decode!r}")
    return DECODE_PLACES[decode](device=device, jpeg=jpeg)


def _auto(*, device: str, jpeg: bool) -> bool:
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return on_gpu and jpeg


DECODE_PLACES: dict[DecodePlace, Callable[..., bool]] = {
    "workers": lambda **_: False,
    "device": lambda **_: True,
    "auto": _auto,
}
"""data.decode -> whether a dataset of ``source`` and ``modality`` decodes on ``device``."""


def jpeg_size(data: bytes | bytearray | memoryview, *, path: Path | str = "") -> tuple[int, int]:
    """``(height, width)`` of a JPEG from its frame header, without decoding it; anything else
    (or a header cut short) raises ``DataError`` naming ``path``."""
    view = memoryview(data)
    if len(view) < 4 or view[0] != 0xFF or view[1] != 0xD8:
        raise DataError(f"{path}: not a JPEG file (device decoding reads JPEG frames only)")
    at = 2
    while at + 4 <= len(view):
        if view[at] != 0xFF:
            break
        marker = view[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a segment
            at += 2
            continue
        length = (view[at + 2] << 8) | view[at + 3]
        if marker in _SOF_MARKERS:
            if at + 9 > len(view):
                break
            height = (view[at + 5] << 8) | view[at + 6]
            width = (view[at + 7] << 8) | view[at + 8]
            if height == 0 or width == 0:
                break
            return height, width
        if marker == 0xDA or length < 2:  # image data before any frame header
            break
        at += 2 + length
    raise DataError(f"{path}: missing or unreadable image (no JPEG frame header)")


@dataclass(frozen=True)
class SkippedVideo:
    """The item of a video that could not be read, with ``skip_bad_videos``: in a loader worker
    (:class:`datp.data.dataset.VideoDataset`) or, its JPEGs decoded on the device, when its
    batch is decoded (:func:`decode_batch_skipping`)."""

    video: str
    reason: str


@dataclass
class EncodedClip:
    """One clip of N ``segments`` as the worker leaves it: either its distinct JPEG files, one
    after another in ``data`` (1-D uint8; file i ends at ``ends[i]``) with ``order`` (N * K
    file numbers, K = 1 for RGB, 2L for flow: which file each place takes), or, for a source
    that is not a JPEG folder, its decoded ``pixels`` (uint8 ``[N, D, H, W]``). ``draw`` is the
    training crop (None when testing); ``transform`` says the output size and the test crops.
    """

    segments: int
    height: int
    width: int
    transform: TrainTransform | EvalTransform
    draw: CropDraw | None
    data: Tensor | None = None
    ends: list[int] = field(default_factory=list)
    order: list[int] = field(default_factory=list)
    pixels: Tensor | None = None
    path: str = ""
    skippable: bool = False
    """Its dataset skips bad videos (``skip_bad_videos``): a clip that cannot be decoded leaves
    its batch (:func:`decode_batch_skipping`) instead of stopping the run."""


@dataclass
class EncodedBatch:
    """The clips of one batch, in batch order (what ``collate_videos`` gathers), with the bytes
    of all their JPEG files in one buffer ``data``, clip b's from ``starts[b]``: a batch crosses
    from a loader worker as one shared tensor, not one per file (each would hold a file
    descriptor)."""

    clips: list[EncodedClip]
    data: Tensor
    starts: list[int]

    @classmethod
    def collate(cls, clips: Sequence[EncodedClip]) -> EncodedBatch:
        buffers = [clip.data for clip in clips if clip.data is not None]
        data = torch.cat(buffers) if buffers else torch.empty(0, dtype=torch.uint8)
        sizes = [0 if clip.data is None else len(clip.data) for clip in clips]
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        kept = [dataclasses.replace(clip, data=None) for clip in clips]
        return cls(clips=kept, data=data, starts=starts)

    def files(self, index: int) -> list[Tensor]:
        """The JPEG files of clip ``index`` (views of ``data``); none for a decoded clip."""
        start, clip = self.starts[index], self.clips[index]
        bounds = [start, *(start + end for end in clip.ends)]
        return [self.data[a:b] for a, b in itertools.pairwise(bounds)]

    def select(self, indices: Sequence[int]) -> EncodedBatch:
        """The clips ``indices``, in that order (their bytes stay in the one buffer)."""
        return EncodedBatch(clips=[self.clips[i] for i in indices], data=self.data,
                            starts=[self.starts[i] for i in indices])

    def pin_memory(self) -> EncodedBatch:
        """The batch in pinned memory (what a DataLoader with ``pin_memory`` calls), so that
        decoded clips' pixels copy to the GPU without waiting."""
        clips = [clip if clip.pixels is None
                 else dataclasses.replace(clip, pixels=clip.pixels.pin_memory())
                 for clip in self.clips]
        return EncodedBatch(clips=clips, data=self.data.pin_memory(), starts=self.starts)

    def __len__(self) -> int:
        return len(self.clips)


def encode_clip(
    paths: Sequence[Path], *, segments: int, folder: Path,
    transform: TrainTransform | EvalTransform, rng: np.random.Generator | None,
) -> EncodedClip:
    """Read the JPEG ``paths`` of one clip (in place order, repeats allowed) as bytes, check that
    they have one size, and draw the training crop from ``rng`` (None when testing)."""
    unique = list(dict.fromkeys(paths))
    position = {path: i for i, path in enumerate(unique)}
    data, ends, sizes = bytearray(), [], set()
    for path in unique:
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except OSError as error:
            raise DataError(f"{path}: missing or unreadable image ({error})") from error
        sizes.add(jpeg_size(content, path=path))
        data += content
        ends.append(len(data))
    if len(sizes) > 1:
        raise DataError(f"{folder}: frames of different sizes {sorted(sizes)}")
    (height, width), = sizes
    draw = transform.draw(height, width, rng) if isinstance(transform, TrainTransform) else None
    return EncodedClip(segments=segments, height=height, width=width, transform=transform,
                       draw=draw, data=torch.frombuffer(data, dtype=torch.uint8), ends=ends,
                       order=[position[path] for path in paths], path=str(folder))


def pixels_clip(
    video: Tensor, *, transform: TrainTransform | EvalTransform,
    rng: np.random.Generator | None, path: str = "",
) -> EncodedClip:
    """A clip decoded in the worker (uint8 ``[N, D, H, W]``) whose crop runs on the device."""
    segments, _, height, width = video.shape
    draw = transform.draw(height, width, rng) if isinstance(transform, TrainTransform) else None
    return EncodedClip(segments=segments, height=height, width=width, transform=transform,
                       draw=draw, pixels=video, path=path)


def decode_jpegs(files: list[Tensor], *, gray: bool, device: torch.device) -> list[Tensor]:
    """uint8 ``[1 or 3, H, W]`` per file, decoded on ``device`` in one call. On CUDA the host
    first waits for the current stream, where the outputs are allocated (the race in the module
    docstring): call it from :func:`decode_ahead`'s thread, or the caller waits for its queue."""
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.GRAY if gray else ImageReadMode.RGB
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its image decoders
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(files, mode=mode, device=device)


def _frames(batch: EncodedBatch, device: torch.device, *, crop: bool) -> list[Tensor]:
    """uint8 ``[N, D, H, W]`` per clip on ``device`` (with ``crop``, only each clip's training
    box ``[N, D, h, w]``, cut before the images are stacked): every JPEG of the batch decoded
    in one call."""
    clips = batch.clips
    flow = clips[0].transform.modality == "flow"
    files = [batch.files(b) for b in range(len(clips))]
    every_file = [data for clip_files in files for data in clip_files]
    decoded: list[Tensor] = []
    if every_file:
        try:
            decoded = decode_jpegs(every_file, gray=flow, device=device)
        except RuntimeError as error:
            raise _find_bad_clip(batch, flow=flow, error=error) from error
    frames, at = [], 0
    for clip, clip_files in zip(clips, files, strict=True):
        box = (clip.draw.top, clip.draw.left, clip.draw.height, clip.draw.width) if crop else None
        if clip.pixels is not None:
            video = clip.pixels if box is None else F.crop(clip.pixels, *box)
            frames.append(video.to(device, non_blocking=True))
            continue
        images = decoded[at : at + len(clip_files)]
        at += len(clip_files)
        if box is not None:
            images = [F.crop(image, *box) for image in images]
        if device.type == "cpu" and not flow:  # torchvision's fast uint8 resize is HWC
            images = [image.permute(1, 2, 0) for image in images]  # [h, w, 3] views
            video = torch.stack([images[i] for i in clip.order]).permute(0, 3, 1, 2)
        else:  # (a list, not an index tensor: that would be copied to the device, waiting)
            video = torch.stack([images[i] for i in clip.order])  # [N * K, 1 or 3, h, w]
        frames.append(video.reshape(clip.segments, -1, *video.shape[-2:]))  # [N, D, h, w]
    return frames


def _find_bad_clip(batch: EncodedBatch, *, flow: bool, error: RuntimeError) -> DataError:
    """The batch's decoding failed: decode clip by clip on the CPU to name the folder."""
    for b, clip in enumerate(batch.clips):
        try:
            decode_jpegs(batch.files(b), gray=flow, device=torch.device("cpu"))
        except RuntimeError as clip_error:
            return DataError(f"{clip.path}: missing or unreadable image ({clip_error})")
    paths = [clip.path for clip in batch.clips]
    return DataError(f"JPEG decoding of a batch of {paths} failed ({error})")


def decode_batch(batch: EncodedBatch, device: torch.device) -> Tensor:
    """uint8 ``[B, N, D, S, S]`` (training) or ``[B, V, N, D, S, S]`` (testing) on ``device``:
    the batch's JPEGs decoded there, cropped, resized and flipped as the clips' transforms say.
    """
    clips = batch.clips
    if not clips:
        raise ValueError("decode_batch needs at least one clip")
    transform = clips[0].transform
    train = isinstance(transform, TrainTransform)
    frames = _frames(batch, torch.device(device), crop=train)
    if train:  # the frames are cropped already: the boxes are whole
        boxes = [(0, 0, *video.shape[-2:]) for video in frames]
        flips = [c.draw.flip for c in clips]
        return F.batch_crop_resize_flip(frames, boxes, flips, size=transform.size,
                                        flow=transform.modality == "flow")
    return _test_views(frames, transform)


def decode_batch_skipping(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch whose :class:`EncodedBatch` ``inputs`` are decoded on ``device``
    (:func:`decode_batch`), the same batch otherwise. A clip of a dataset that skips bad
    videos (``EncodedClip.skippable``) that cannot be decoded leaves the batch, as a bad video
    read in a loader worker does: its video is listed under ``batch["skipped"]`` and its entries
    of every other key go; a batch with no clip left keeps only ``skipped``."""
    inputs = batch.get("inputs")
    if not isinstance(inputs, EncodedBatch):
        return batch
    try:
        return {**batch, "inputs": decode_batch(inputs, device)}
    except DataError:
        if not all(clip.skippable for clip in inputs.clips):
            raise
    flow = inputs.clips[0].transform.modality == "flow"
    bad = dict(_bad_clips(inputs, flow=flow))
    videos = batch.get("video") or [clip.path for clip in inputs.clips]
    skipped = [*batch.get("skipped", []),
               *(SkippedVideo(video=videos[b], reason=bad[b]) for b in sorted(bad))]
    kept = [b for b in range(len(inputs)) if b not in bad]
    if not kept:
        return {"skipped": skipped}
    rows = torch.tensor(kept)
    out = {key: value[rows] if isinstance(value, Tensor) and len(value) == len(inputs)
           else [value[b] for b in kept] if isinstance(value, list) and len(value) == len(inputs)
           else value for key, value in batch.items() if key not in ("inputs", "skipped")}
    return {**out, "inputs": decode_batch(inputs.select(kept), device), "skipped": skipped}


def _bad_clips(batch: EncodedBatch, *, flow: bool) -> Iterator[tuple[int, str]]:
    """``(index, reason)`` of each clip whose JPEGs do not decode (on the CPU, one by one)."""
    for b, clip in enumerate(batch.clips):
        try:
            decode_jpegs(batch.files(b), gray=flow, device=torch.device("cpu"))
        except RuntimeError as error:
            yield b, f"{clip.path}: missing or unreadable image ({error})"


def _test_views(frames: list[Tensor], transform: EvalTransform) -> Tensor:
    """``[B, V, N, D, S, S]``: the test views, computed once per group of equal frame sizes."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, video in enumerate(frames):
        groups.setdefault(tuple(video.shape), []).append(i)
    out: list[Tensor] = list(frames)
    for members in groups.values():
        views = transform.views(torch.stack([frames[i] for i in members]))  # [V, G, N, D, S, S]
        for i, clip_views in zip(members, views.movedim(0, 1), strict=True):
            out[i] = clip_views  # [V, N, D, S, S]
    return torch.stack(out)


class StreamWorker:
    """One thread that runs jobs, on a CUDA stream of its own when ``device`` is a GPU (see the
    module docstring); :meth:`take` hands a job's tensors to the caller's stream with an event
    and ``record_stream``. What :func:`decode_ahead` decodes in, and what copies the next frames
    of ``datp flow`` to the GPU while TV-L1 runs (:mod:`datp.flow.backends`)."""

    def __init__(self, device: torch.device, *, name: str = "datp-decode") -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:  # a thread starts on device 0: name the device
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.index = torch.device("cuda", index)
            self.stream = torch.cuda.Stream(self.index)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, job: Callable[..., Tensor | list[Tensor]], *args: Any) -> Future:
        """Run ``job(*args)`` in the thread (on its stream); its result goes to :meth:`take`."""
        return self.pool.submit(self._run, job, *args)

    def _run(self, job: Callable[..., Any], *args: Any) -> tuple[Any, torch.cuda.Event | None]:
        if not self.cuda:
            return job(*args), None
        with torch.cuda.device(self.index), torch.cuda.stream(self.stream):
            out = job(*args)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return out, ready

    def take(self, future: Future) -> Any:
        """The tensor (a list of them, or a batch dict's ``inputs``) a job returned, usable on
        the caller's current stream: that stream waits for the job's work (the device waits,
        not the host), and the tensors' blocks go back to the decode stream only after the
        caller's kernels queued before they are freed have run. Raises what the job raised."""
        out, ready = future.result()
        if ready is not None:
            consumer = torch.cuda.current_stream(self.index)
            consumer.wait_event(ready)
            found = out.get("inputs") if isinstance(out, dict) else out
            for tensor in [found] if isinstance(found, Tensor) else found or []:
                tensor.record_stream(consumer)
        return out

    def close(self) -> None:
        """Wait for the job running; drop the ones not started."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def decode_ahead(
    batches: Iterable[dict[str, Any]], device: torch.device | str, *, thread: bool | None = None
) -> Iterator[dict[str, Any]]:
    """The loader's ``batches`` in order, each :class:`EncodedBatch` ``inputs`` decoded on
    ``device`` (the uint8 batch of :func:`decode_batch`) in a :class:`StreamWorker` one batch
    ahead of the caller (module docstring: the decode race). Other batches pass as they are.
    ``thread`` (None: on CUDA only) decodes in the thread; without it the batches pass unchanged
    and :func:`datp.engine.inference.forward_batch` decodes them, as on a CPU, where a thread
    would take a core from the step. A decoding error is raised when its batch is reached;
    closing the iterator waits for the decode in flight."""
    device = torch.device(device)
    if not (device.type == "cuda" if thread is None else thread):
        for batch in batches:  # decoded by forward_batch, but for a batch that may drop clips
            yield decode_batch_skipping(batch, device) if _skippable(batch) else batch
        return
    decoder = StreamWorker(device)
    pending: deque[tuple[dict[str, Any], Future | None]] = deque()
    try:
        for batch in batches:
            inputs = batch.get("inputs")
            job = (decoder.submit(decode_batch_skipping, batch, device)
                   if isinstance(inputs, EncodedBatch) else None)
            pending.append((batch, job))
            if len(pending) > 1:  # the next batch is decoding while the caller has this one
                yield _decoded(*pending.popleft(), decoder)
        while pending:
            yield _decoded(*pending.popleft(), decoder)
    finally:
        decoder.close()


def _decoded(batch: dict[str, Any], job: Future | None, decoder: StreamWorker) -> dict[str, Any]:
    return batch if job is None else decoder.take(job)


def _skippable(batch: dict[str, Any]) -> bool:
    inputs = batch.get("inputs")
    return isinstance(inputs, EncodedBatch) and any(clip.skippable for clip in inputs.clips)


def inputs_on(inputs: torch.Tensor | EncodedBatch, device: torch.device) -> torch.Tensor:
    """A batch's ``inputs`` as float32 on ``device``, whatever the loader handed over: JPEG
    bytes (:class:`EncodedBatch`) decoded there, uint8 clips copied (``non_blocking``) and
    normalized there bit for bit as the loader's :func:`datp.data.functional.normalize`, float32
    clips (normalized by the loader) copied."""
    if isinstance(inputs, EncodedBatch):
        inputs = decode_batch(inputs, device)
    inputs = inputs.to(device, non_blocking=True)
    return F.normalize_on(inputs) if inputs.dtype == torch.uint8 else inputs
