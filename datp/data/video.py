"""Frame-exact video decoding with PyAV (and torchcodec when installed).

T frames, H, W image size. ``read`` returns uint8 RGB frames ``[T, H, W, 3]``.

Frame-exact random access: on opening, the packets are demuxed (not decoded) once, which gives
the exact frame count (the container's own count is often missing or wrong) and the presentation
time stamp (pts) of every frame in display order, plus which frames are keyframes. ``read`` sorts
the requested indices and walks through the file once: for each target it seeks to the keyframe
at or before it only when that keyframe lies after the frame decoded last, then decodes forward
and keeps the frames whose pts match. The test suite holds this against a sequential decode.

Time as the video has it: ``frame_times`` holds each frame's presentation time in seconds from
the first frame (pts * time_base), so a variable frame rate gives the right seconds where
``index / fps`` would not. A display rotation (the display matrix phones write, e.g. -90
degrees for a portrait video stored sideways) is applied to the decoded frames, as players and
FFmpeg's autorotate do (:func:`upright`), so a model sees the video upright; torchcodec applies
it itself.
"""

from __future__ import annotations

import array
import collections
import functools
import logging
import multiprocessing.util
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from datp.choices import Decoder
from datp.errors import DataError, InputError, MissingDependency

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


@runtime_checkable
class FrameSource(Protocol):
    """What every RGB source offers (video files, frame folders)."""

    path: Path
    num_frames: int
    fps: float | None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB ``[T, H, W, 3]`` for 0-based ``indices`` (any order, repeats allowed)."""
        ...


def _import_av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise MissingDependency(
            "reading video files needs PyAV: pip install 'datp[video]' (or pip install av)"
        ) from error
    return av


class VideoReader:
    """A video file decoded with PyAV, frame-exactly. Use as a context manager or call ``close``.

    Raises ``DataError`` naming the file when it cannot be opened, has no video stream, holds no
    frame, or stops before a requested frame (truncated).
    """

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        av = _import_av()
        self.path = Path(path)
        self._av = av
        self._closed = False
        try:
            self._container = av.open(str(self.path))
        except (OSError, av.FFmpegError) as error:
            raise DataError(f"{self.path}: cannot open video ({error})") from error
        try:
            if not self._container.streams.video:
                raise DataError(f"{self.path}: no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_count = threads
            self._index()
        except BaseException:
            self._container.close()
            raise
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None

    def _index(self) -> None:
        """Demux every packet once: exact frame count, display-order pts, keyframe positions.

        Kept as int64 arrays (8 bytes a frame; a dict of Python ints took about 160), so that a
        long video's index stays small beside the frames decoded from it."""
        stamps = array.array("q")
        keyframe_stamps = array.array("q")
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise DataError(f"{self.path}: packets without time stamps; re-encode it")
                stamps.append(stamp)
                if packet.is_keyframe:
                    keyframe_stamps.append(stamp)
        except self._av.FFmpegError as error:
            raise DataError(f"{self.path}: cannot demux video ({error})") from error
        if not stamps:
            raise DataError(f"{self.path}: video has no frames")
        self._stamps = np.sort(np.frombuffer(stamps, dtype=np.int64))  # [T] display order
        time_base = self._stream.time_base
        # [T] seconds from the first frame: the presentation time stamps, not index / fps
        self.frame_times: np.ndarray | None = (
            (self._stamps - self._stamps[0]).astype(np.float64) * float(time_base)
            if time_base else None
        )
        self.num_frames = len(self._stamps)
        # Display index of every keyframe, sorted; frame 0 always counts as a seek point.
        self._keyframes = np.union1d([0], self._position(np.frombuffer(keyframe_stamps,
                                                                       dtype=np.int64)))
        # What the container's header claims; None when it does not say. Fewer frames than
        # declared usually means a truncated file (``datp check`` reports it); more is common
        # (headers are often wrong) and harmless.
        self.declared_frames: int | None = self._stream.frames or None
        if self.declared_frames and self.declared_frames > self.num_frames:
            log.warning(
                "%s: the container declares %d frames but holds %d (truncated?)",
                self.path, self.declared_frames, self.num_frames,
            )

    def _position(self, stamps: np.ndarray) -> np.ndarray:
        """Display index of each pts: its own, or the next one a decoder that rewrites time
        stamps comes closest to (clamped to the last frame)."""
        return np.minimum(np.searchsorted(self._stamps, stamps), len(self._stamps) - 1)

    def _frame_index(self, frame) -> int | None:
        stamp = frame.pts if frame.pts is not None else frame.dts
        if stamp is None:
            return None
        return int(self._position(np.int64(stamp)))

    def read(self, indices: Sequence[int], *, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 RGB ``[T, H, W, 3]`` for the 0-based ``indices``, decoding the file in one pass;
        into ``out`` (uint8 ``[T, H, W, 3]``) when given, so that a stream reuses one buffer."""
        wanted = self._checked(indices, out)
        # Each frame goes straight to its places in the result, which is all this holds: no
        # second copy of the frames (a long video's chunk is as large as memory allows).
        places: dict[int, list[int]] = {}
        for place, index in enumerate(wanted.tolist()):
            places.setdefault(index, []).append(place)
        targets = sorted(places)
        decoded: set[int] = set()
        result = out  # [len(wanted), H, W, 3]; made with the first frame when not given
        last = -1  # display index of the frame decoded last
        frames = None
        try:
            for target in targets:
                if target in decoded:
                    continue
                keyframe = int(self._keyframes[np.searchsorted(self._keyframes, target,
                                                               side="right") - 1])
                if frames is None or keyframe > last or target <= last:
                    # The keyframe lies ahead: jump to it instead of decoding up to it.
                    self._container.seek(
                        int(self._stamps[keyframe]), stream=self._stream, backward=True,
                        any_frame=False,
                    )
                    frames = self._container.decode(self._stream)
                    last = -1
                for frame in frames:
                    index = self._frame_index(frame)
                    if index is None:
                        continue
                    last = index
                    if index in places and index not in decoded:
                        image = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                        if result is None:
                            result = np.empty((len(wanted), *image.shape), dtype=image.dtype)
                        result[places[index]] = image
                        decoded.add(index)
                    if index >= target:
                        break
                if target not in decoded:
                    raise DataError(
                        f"{self.path}: truncated or corrupt, frame {target} of "
                        f"{self.num_frames} could not be decoded"
                    )
        except self._av.FFmpegError as error:
            raise DataError(f"{self.path}: decoding failed ({error})") from error
        assert result is not None, "every target was decoded"
        return result

    def _checked(self, indices: Sequence[int], out: np.ndarray | None) -> np.ndarray:
        """``indices`` as int64 ``[T]``, once they and ``out`` are checked."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            raise ValueError("read needs at least one frame index")
        if self._closed:
            raise ValueError(f"{self.path}: the reader is closed")
        if wanted.min() < 0 or wanted.max() >= self.num_frames:
            raise IndexError(
                f"{self.path}: frame indices must lie in [0, {self.num_frames}), "
                f"got {wanted.min()}..{wanted.max()}"
            )
        if out is not None and (out.dtype != np.uint8 or out.ndim != 4 or len(out) != len(wanted)):
            raise ValueError(f"out must be uint8 [{len(wanted)}, H, W, 3], got {out.dtype} "
                             f"{tuple(out.shape)}")
        return wanted

    def read_all(self) -> np.ndarray:
        """Every frame, decoded sequentially: uint8 ``[T, H, W, 3]``."""
        return self.read(range(self.num_frames))

    def close(self) -> None:
        self._closed = True
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, num_frames={self.num_frames}, fps={self.fps})"


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """``image [H, W, 3]`` turned as its display matrix asks: ``rotation`` is in degrees
    counter-clockwise, as PyAV's ``VideoFrame.rotation`` and FFmpeg's
    ``av_display_rotation_get`` give it (-90: a quarter turn clockwise, a phone's portrait video
    stored sideways), rounded to quarter turns; ``[W, H, 3]`` after an odd number of them."""
    turns = round(rotation / 90) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=turns))  # k > 0 turns counter-clockwise


def presentation_times(path: str | Path) -> np.ndarray | None:
    """float64 ``[T]``: each frame's presentation time in seconds from the first, read by
    demuxing ``path`` with PyAV (nothing is decoded); None without PyAV or time stamps."""
    try:
        _import_av()
    except MissingDependency:
        return None
    with VideoReader(path) as reader:
        return reader.frame_times


def _torchcodec(path: str | Path, threads: int) -> FrameSource:
    """A torchcodec reader; one that cannot decode on this machine (no FFmpeg shared libraries)
    raises ``MissingDependency`` saying what to install."""
    problem = decoder_problem("torchcodec")
    if problem is not None:
        raise MissingDependency(
            f"data.decoder = \"torchcodec\" cannot decode here: {problem}. Install FFmpeg's "
            "shared libraries (apt-get install ffmpeg; torchcodec supports FFmpeg 4 to 9) "
            "and pip install 'datp[torchcodec]', or use decoder = \"pyav\" (the default)"
        )
    from datp.data.video_torchcodec import TorchCodecReader

    return TorchCodecReader(path, threads=threads)


DECODERS: dict[Decoder, Callable[[str | Path, int], FrameSource]] = {
    "pyav": lambda path, threads: VideoReader(path, threads=threads),
    "torchcodec": _torchcodec,
}
"""data.decoder -> a frame-exact reader ``(path, threads)``: PyAV (the default, bundles FFmpeg)
or torchcodec (optional, imported only when chosen)."""


def _known_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise InputError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")


def open_video(path: str | Path, *, decoder: str = "pyav", threads: int = 1) -> FrameSource:
    """A frame-exact reader of ``path`` with ``decoder`` (:data:`DECODERS`)."""
    _known_decoder(decoder)
    return DECODERS[decoder](path, threads)


class OpenReaders:
    """The video readers one process keeps open, the ``capacity`` used last, keyed by path and
    decoder: reading a video again skips opening it and demuxing its packet index.

    Each DataLoader worker has its own (readers do not cross processes: a pickled or forked copy
    starts empty), and closes them when the process exits.
    """

    def __init__(self, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._readers: collections.OrderedDict[tuple[Path, str], FrameSource] = (
            collections.OrderedDict())
        self._pid = os.getpid()

    def open(self, path: str | Path, *, decoder: str = "pyav") -> FrameSource:
        """The open reader of ``path``, opened (:func:`open_video`) when not held."""
        if self._pid != os.getpid():  # forked: the parent's readers are not ours to use
            self._readers = collections.OrderedDict()
            self._pid = os.getpid()
        key = (Path(path), decoder)
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
            return reader
        if not self._readers:  # the first in this process: close them all at its exit
            multiprocessing.util.Finalize(self, _close_all, args=(self._readers,),
                                          exitpriority=0)
        reader = open_video(path, decoder=decoder)
        self._readers[key] = reader
        while len(self._readers) > self.capacity:
            _, oldest = self._readers.popitem(last=False)
            oldest.close()
        return reader

    def holds(self, reader: object) -> bool:
        return any(held is reader for held in self._readers.values())

    def close(self) -> None:
        _close_all(self._readers)

    def __len__(self) -> int:
        return len(self._readers)

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


def _close_all(readers: collections.OrderedDict) -> None:
    while readers:
        readers.popitem()[1].close()


@functools.cache
def decoder_problem(decoder: str) -> str | None:
    """None when ``decoder`` decodes on this machine, else why not (one line).

    Probed as a real use would: build the decoder on a tiny video written with PyAV and read a
    frame. torchcodec imports without FFmpeg's shared libraries and fails only then.
    """
    if decoder == "pyav":
        try:
            _import_av()
        except ImportError as error:
            return str(error)
        return None
    _known_decoder(decoder)
    try:
        from datp.data.video_torchcodec import TorchCodecReader
    except ImportError as error:
        return str(error)
    with tempfile.TemporaryDirectory(prefix="datp-probe-") as folder:
        sample = Path(folder) / "probe.avi"
        try:
            write_video(sample, np.zeros((2, 16, 16, 3), dtype=np.uint8))
        except ImportError:
            return None  # nothing to probe with; a real file shows any problem on opening
        try:
            with TorchCodecReader(sample) as reader:
                reader.read([1])
        except Exception as error:  # the library's own loading error, whatever its type
            return _first_sentence(error.__cause__ or error)
    return None


def _first_sentence(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(". :") if text else type(error).__name__


def write_video(
    path: str | Path, frames: np.ndarray, *, fps: int = 25, codec: str = "mpeg4", gop: int = 12,
    bit_rate: int = 2_000_000,
) -> None:
    """Encode uint8 RGB ``[T, H, W, 3]`` (H, W even) with a short GOP, so seeking stays cheap.

    Single-threaded, so the same frames give the same bytes.
    """
    av = _import_av()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"video sides must be even for yuv420p, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.bit_rate = bit_rate
        stream.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
