"""The video dataset: annotation items -> sources -> TSN segments -> transformed tensors.

B videos, N segments, V views (test crops), D channels (3 RGB; 2L flow, x and y interleaved),
L flow fields per segment, S image side.

An item is the dict of docs/ARCHITECTURE.md: ``inputs`` float32 ``[N, D, S, S]`` (training) or
``[V, N, D, S, S]`` (testing), ``label`` int, ``times`` float32 ``[N]`` in [0, 1],
``frame_indices`` int64 ``[N]`` (0-based start of each segment) and ``video`` (relative path).

Randomness: each item draws its own numpy generator from torch's generator, so the DataLoader's
per-worker seeding gives every worker and epoch different draws, and ``torch.manual_seed``
makes a single-process run reproducible.

Bad videos raise :class:`DataError` naming the file. With ``skip_bad_videos=True`` a bad video
is logged and its item becomes a :class:`SkippedVideo`; :func:`collate_videos` drops those
from the batch and lists them under ``batch["skipped"]`` (a batch with nothing left has only that
key), so that training and evaluation count them. No other video is ever substituted. Videos the
annotations name but that do not exist are, with ``skip_bad_videos``, left out of the dataset and
listed in ``dataset.missing``.

Each item also carries ``num_frames``, the frames (or flow fields) its video has: a video shorter
than the N segments it is sampled into repeats frames, and the training loop says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datp.config import FORMATS, MODALITIES, SOURCES, DataConfig
from datp.data.compact_flow import FLOW_FILE_SUFFIXES, flow_file, open_flow
from datp.data.device_decode import (
    EncodedBatch,
    EncodedClip,
    decodes_on_device,
    encode_clip,
    pixels_clip,
)
from datp.data.errors import DataError
from datp.data.frames import FlowFolder, FrameFolder
from datp.data.sampling import eval_starts, normalized_times, train_starts
from datp.data.splits import (
    Split,
    VideoItem,
    read_class_folders,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from datp.data.transforms import EvalTransform, TrainTransform
from datp.data.video import (
    VIDEO_DECODERS,
    VIDEO_EXTENSIONS,
    OpenReaders,
    VideoReader,
    open_video,
)
from datp.errors import InputError

log = logging.getLogger(__name__)


def strip_video_extension(path: str) -> str:
    """``Class/v_x.avi`` -> ``Class/v_x`` (the video's frame or flow folder); others unchanged."""
    suffix = Path(path).suffix
    return path[: -len(suffix)] if suffix.lower() in VIDEO_EXTENSIONS else path


@dataclass(frozen=True)
class SkippedVideo:
    """The item of a video that could not be read, with ``skip_bad_videos``."""

    video: str
    reason: str


class VideoDataset(torch.utils.data.Dataset):
    """TSN-style dataset over ``items``; ``open_source(item)`` gives a frame or flow source.

    ``transform`` takes uint8 ``[N, D, H, W]`` and, in training, the item's numpy generator:
    ``transform(video, rng)``; in testing ``transform(video)``. None returns the uint8 frames.
    With ``decode_on_device`` the transform's random draw happens here and the rest on the device
    (``datp.data.device_decode``).
    """

    def __init__(
        self, *, items: Sequence[VideoItem], classes: Sequence[str],
        open_source: Callable[[VideoItem], Any], modality: str = "rgb", num_segments: int = 10,
        flow_length: int = 5, train: bool = True,
        transform: Callable[..., torch.Tensor] | None = None, skip_bad_videos: bool = False,
        missing: Sequence[str] = (), decode_on_device: bool = False,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if decode_on_device and not isinstance(transform, TrainTransform | EvalTransform):
            raise ValueError("decode_on_device needs a TrainTransform or EvalTransform")
        if not items:
            raise ValueError("a dataset needs at least one video")
        self.items = list(items)
        self.classes = list(classes)
        self.open_source = open_source
        self.modality = modality
        self.num_segments = num_segments
        self.flow_length = flow_length if modality == "flow" else 1
        self.train = train
        self.transform = transform
        self.skip_bad_videos = skip_bad_videos
        self.missing = list(missing)
        """Videos the annotations name that do not exist and were left out ("where: what")."""
        self.decode_on_device = decode_on_device
        """Items carry an :class:`EncodedClip` (JPEG bytes and the crop drawn) as ``inputs``,
        for :func:`datp.data.device_decode.decode_batch` to decode and crop on the device."""

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedVideo:
        item = self.items[index]
        try:
            return self._load(item)
        except DataError as error:
            if not self.skip_bad_videos:
                raise
            log.warning("skipping bad video %s (%s): %s", item.path, item.origin, error)
            return SkippedVideo(video=item.path, reason=str(error).splitlines()[0])

    def _load(self, item: VideoItem) -> dict[str, Any]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        source = self.open_source(item)
        try:
            num_frames = source.num_frames
            length = self.flow_length
            if self.train:
                starts = train_starts(num_frames, self.num_segments, length=length, rng=rng)
            else:
                starts = eval_starts(num_frames, self.num_segments, length=length)
            if self.decode_on_device and isinstance(source, FrameFolder | FlowFolder):
                paths = (source.image_paths(starts) if self.modality == "rgb"
                         else source.image_paths(starts, length))
                video = encode_clip(paths, segments=len(starts), folder=source.path,
                                    transform=self.transform, rng=rng if self.train else None)
            elif self.modality == "rgb":
                frames = torch.from_numpy(source.read(starts))  # [N, H, W, 3]
                video = frames.permute(0, 3, 1, 2)  # [N, 3, H, W]
            else:
                stacks = torch.from_numpy(source.read_flow(starts, length))  # [N, L, 2, H, W]
                video = stacks.flatten(1, 2)  # [N, 2L, H, W], x1 y1 x2 y2 ...
        finally:
            release = getattr(self.open_source, "release", None)
            if release is not None:
                release(source)
            elif (close := getattr(source, "close", None)) is not None:
                close()
        if self.decode_on_device:
            if not isinstance(video, EncodedClip):  # decoded here; cropped on the device
                video = pixels_clip(video, transform=self.transform, path=item.path,
                                    rng=rng if self.train else None)
        elif self.transform is not None:
            video = self.transform(video, rng) if self.train else self.transform(video)
        return {
            "inputs": video,
            "label": item.label,
            "times": torch.from_numpy(normalized_times(starts, num_frames=num_frames,
                                                       length=length)),
            "frame_indices": torch.from_numpy(starts),
            "video": item.path,
            "num_frames": num_frames,
        }

    def __repr__(self) -> str:
        return (f"VideoDataset({len(self)} videos, {len(self.classes)} classes, "
                f"modality={self.modality!r}, N={self.num_segments}, train={self.train}, "
                f"transform={self.transform})")


@dataclass(frozen=True)
class SourceOpener:
    """Opens an item's source under ``base``: a video file, a frame folder, or flow stored as a
    TSN folder (``flow_x_00001.jpg`` ..) or as a per-video ``<video>.zflow`` / ``.flow`` file
    (datp.flow; see ``datp.data.compact_flow.open_flow``).

    A plain object rather than a closure, so datasets pickle into spawned DataLoader workers.
    """

    kind: str
    """video | frames | flow"""
    base: Path
    decoder: str = "pyav"
    """For video files: pyav | torchcodec."""
    readers: OpenReaders | None = field(default=None, compare=False, repr=False)
    """For video files: readers kept open per process (None: open and close per read)."""

    def locate(self, item: VideoItem) -> Path:
        if self.kind == "video":
            return self.base / item.path
        folder = self.base / strip_video_extension(item.path)
        if self.kind == "flow":
            return flow_file(folder) or folder
        return folder

    def exists(self, item: VideoItem) -> bool:
        path = self.locate(item)
        if self.kind == "video" or path.suffix in FLOW_FILE_SUFFIXES:
            return path.is_file()
        return path.is_dir()

    def __call__(self, item: VideoItem) -> VideoReader | FrameFolder | FlowFolder:
        path = self.locate(item)
        if self.kind == "video":
            if self.readers is not None:
                return self.readers.open(path, decoder=self.decoder)
            return open_video(path, decoder=self.decoder)
        if self.kind == "frames":
            return FrameFolder(path)
        return open_flow(path)

    def release(self, source: Any) -> None:
        """Done reading ``source``: close it, unless it is one of the readers kept open."""
        close = getattr(source, "close", None)
        if close is not None and not (self.readers is not None and self.readers.holds(source)):
            close()


def collate_videos(batch: list[dict[str, Any] | SkippedVideo]) -> dict[str, Any]:
    """Default collate of the videos that could be read; ``skipped`` lists the
    :class:`SkippedVideo` items of those that could not (a batch of skipped videos only has no
    other key). Clips left encoded for the device become one :class:`EncodedBatch`."""
    skipped = [sample for sample in batch if isinstance(sample, SkippedVideo)]
    kept = [sample for sample in batch if not isinstance(sample, SkippedVideo)]
    encoded = [sample["inputs"] for sample in kept if isinstance(sample["inputs"], EncodedClip)]
    if encoded:  # device decoding: the bytes of all clips in one buffer, decoded there
        kept = [{key: value for key, value in sample.items() if key != "inputs"}
                for sample in kept]
    collated = torch.utils.data.default_collate(kept) if kept else {}
    if encoded:
        collated["inputs"] = EncodedBatch.collate(encoded)
    collated["skipped"] = skipped
    return collated


def _first_dir(root: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def media_folder(*, root: str | Path, format: str, subset: str, source: str = "video") -> Path:
    """The folder a split's paths are relative to: the first of the format's usual folders that
    exists, else ``root`` itself. Found from the layout alone, so that it is right even when the
    annotations cannot be read."""
    root = Path(root)
    media_names = ("rawframes", "frames") if source == "frames" else ("videos",)
    if format == "ucf101":
        return _first_dir(root, (*media_names, "UCF-101"))
    if format == "hmdb51":
        return _first_dir(root, (*media_names, "hmdb51", "hmdb51_org"))
    if format == "kinetics":
        word = "train" if subset == "train" else "val"
        return _first_dir(root, (f"videos_{word}", word, *media_names))
    media = _first_dir(root, media_names)
    if format == "folders" and (media / subset).is_dir():
        return media / subset
    return media


def read_split(
    *, root: str | Path, format: str, subset: str, split: int = 1, annotations: str = "",
    train_list: str = "", test_list: str = "", source: str = "video",
) -> tuple[Split, Path]:
    """The split's items and the folder their paths are relative to (:func:`media_folder`)."""
    root = Path(root)
    if format not in FORMATS:
        raise ValueError(f"annotation format must be one of {FORMATS}, got {format!r}")
    if subset not in ("train", "test"):
        raise ValueError(f'subset must be "train" or "test", got {subset!r}')
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    media = media_folder(root=root, format=format, subset=subset, source=source)
    if format == "ucf101":
        split_data = read_ucf101(root / (annotations or "ucfTrainTestlist"), split=split,
                                 subset=subset)
        return split_data, media
    if format == "hmdb51":
        split_data = read_hmdb51(root / (annotations or "testTrainMulti_7030_splits"),
                                 split=split, subset=subset)
        return split_data, media
    if format == "kinetics":
        folder = root / (annotations or "annotations")
        names = {"train": ("train.csv",), "test": ("val.csv", "validate.csv")}
        csv_file = next((folder / n for n in names[subset] if (folder / n).is_file()), None)
        if csv_file is None:
            raise DataError(f"{folder}: none of {names[subset]} found")
        classes = None
        if subset == "test" and (folder / "train.csv").is_file():
            classes = read_kinetics_classes(folder / "train.csv")
        return read_kinetics(csv_file, video_root=media, classes=classes), media
    if format == "list":
        list_name = train_list if subset == "train" else test_list
        if not list_name:
            raise InputError(f"format 'list' needs {subset}_list")
        return read_list_file(root / list_name), media
    if media.name != subset:
        log.warning("%s has no %s/ folder: every class folder video is used for %s",
                    media, subset, subset)
    kind = "frames" if source == "frames" else "videos"
    return read_class_folders(media, kind=kind), media


def read_kinetics_classes(csv_file: Path) -> list[str]:
    """Sorted labels of a Kinetics CSV, without looking for the clips."""
    import csv

    try:
        with open(csv_file, encoding="utf-8-sig", newline="") as handle:
            rows = csv.DictReader(handle)
            return sorted({row["label"].strip() for row in rows if row.get("label")})
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_file}: not valid UTF-8 (byte 0x{error.object[error.start]:02x} "
                        f"at offset {error.start}); datp check names the line") from error


def repeated_items(items: Sequence[VideoItem]) -> list[tuple[VideoItem, VideoItem]]:
    """Lines of a list that name a video an earlier line names: ``(item, earlier)`` pairs, in
    list order (``datp check`` reports each; training warns once)."""
    first: dict[str, VideoItem] = {}
    repeats = []
    for item in items:
        earlier = first.setdefault(item.path, item)
        if earlier is not item:
            repeats.append((item, earlier))
    return repeats


def flow_folder(root: str | Path, flow_root: str = "") -> Path:
    """Where a dataset's flow lies: ``root/flow_root`` (``root/flow`` by default; an absolute
    ``flow_root`` replaces ``root``)."""
    return Path(root) / (flow_root or "flow")


_DEFAULT = DataConfig()
"""The defaults of :func:`build_dataset`'s settings, written once: in ``datp.config``."""


def build_dataset(
    *, root: str | Path, format: str = _DEFAULT.format, split: int = _DEFAULT.split,
    subset: str = "train", annotations: str = _DEFAULT.annotations,
    train_list: str = _DEFAULT.train_list, test_list: str = _DEFAULT.test_list,
    source: str = _DEFAULT.source, flow_root: str = _DEFAULT.flow_root,
    modality: str = _DEFAULT.modality, num_segments: int = _DEFAULT.num_segments,
    flow_length: int = _DEFAULT.flow_length, image_size: int = _DEFAULT.image_size,
    resize_short: int | None = _DEFAULT.resize_short, test_crops: int = _DEFAULT.test_crops,
    skip_bad_videos: bool = _DEFAULT.skip_bad_videos, decoder: str = _DEFAULT.decoder,
    flip: bool = _DEFAULT.flip, normalize_on_device: bool = False, decode: str = "workers",
    device: str = "cpu",
) -> VideoDataset:
    """The dataset of one subset ("train" or "test") of an annotated dataset under ``root``.

    Argument names and defaults follow ``datp.config.DataConfig`` (``normalize_on_device``,
    ``decode`` and ``device`` are resolved: no "auto"). Where the media are looked for:
    ``root/videos`` (or ``UCF-101``, ``hmdb51``, Kinetics' ``videos_train`` / ``videos_val``)
    for ``source="video"``, ``root/rawframes`` or ``root/frames`` for ``source="frames"``
    (folders named like the video without its extension), and ``flow_root`` (default
    ``root/flow``) for flow, laid out like the frame folders. Files the annotations name but
    that do not exist are an error listing all of them, or, with ``skip_bad_videos``, are
    dropped with one logged warning each. ``decode`` says where JPEG folders are decoded
    (:func:`datp.data.device_decode.decodes_on_device`, for the model on ``device``).
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if decoder not in VIDEO_DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(VIDEO_DECODERS)}, got {decoder!r}")
    root = Path(root)
    split_data, media = read_split(root=root, format=format, subset=subset, split=split,
                                   annotations=annotations, train_list=train_list,
                                   test_list=test_list, source=source)
    repeats = repeated_items(split_data.items)
    if repeats:
        _warn_repeats(split_data.annotation, repeats)
    if modality == "flow":
        opener = SourceOpener(kind="flow", base=flow_folder(root, flow_root))
    else:
        readers = OpenReaders() if source == "video" else None
        opener = SourceOpener(kind=source, base=media, decoder=decoder, readers=readers)

    items, problems = _existing(split_data, opener, skip_bad_videos=skip_bad_videos)
    transform = subset_transform(subset, image_size=image_size, modality=modality,
                                 resize_short=resize_short, flip=flip, test_crops=test_crops,
                                 normalize=not normalize_on_device)
    on_device = decodes_on_device(decode, device=device, source=source, modality=modality)
    return VideoDataset(
        items=items, classes=split_data.classes, open_source=opener, modality=modality,
        num_segments=num_segments, flow_length=flow_length, train=subset == "train",
        transform=transform, skip_bad_videos=skip_bad_videos, missing=problems,
        decode_on_device=on_device,
    )


def subset_transform(
    subset: str, *, image_size: int, modality: str, resize_short: int | None, flip: bool,
    test_crops: int, normalize: bool,
) -> TrainTransform | EvalTransform:
    """The transform of a subset: training's random crops (and flips), or the test crops."""
    if subset == "train":
        return TrainTransform(size=image_size, modality=modality, resize_short=resize_short,
                              flip=flip, normalize=normalize)
    return EvalTransform(size=image_size, modality=modality, resize_short=resize_short,
                         crops=test_crops, normalize=normalize)


def _warn_repeats(annotation: str, repeats: list[tuple[VideoItem, VideoItem]]) -> None:
    relabelled = sum(item.label != earlier.label for item, earlier in repeats)
    item, earlier = repeats[0]
    log.warning(
        "%s: %d line(s) name a video listed before%s, e.g. %s (%s, first at %s); each line "
        "is a sample, so these videos weigh more (datp check lists them all)",
        annotation, len(repeats),
        f", {relabelled} with another label" if relabelled else "", item.path, item.origin,
        earlier.origin,
    )


def _existing(
    split_data: Split, opener: SourceOpener, *, skip_bad_videos: bool
) -> tuple[list[VideoItem], list[str]]:
    """The items of ``split_data`` whose media exist, and a "where: what" line for each other
    one; raises DataError for those unless ``skip_bad_videos`` (then each is logged)."""
    items = []
    problems = []
    for item in split_data.items:
        if opener.exists(item):
            items.append(item)
        else:
            what = "file" if opener.kind == "video" else "folder"
            problems.append(f"{item.origin}: {what} {opener.locate(item)} does not exist")
    if problems:
        if not skip_bad_videos:
            raise DataError(problems)
        for problem in problems:
            log.warning("skipping: %s", problem)
        if not items:
            raise DataError([f"{split_data.annotation}: none of its videos exist", *problems])
    return items, problems
