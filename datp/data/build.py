"""The ``[data]`` section made into datasets: the one reader of :class:`datp.config.DataConfig`.

Dimension key: N segments, V views (test crops), D_in input channels (3 RGB, 2L flow), L flow-stack
length, S image side, D feature channels (source "features").

Everything a data setting changes is decided here from the section: which split is read and
from where (:mod:`datp.data.formats`, :mod:`datp.data.sources`), how its segments are sampled and
transformed, where JPEGs are decoded, how much memory a batch takes, and what an evaluation's
protocol records of it. The datasets and readers below take explicit arguments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from datp.config import DataConfig
from datp.data.dataset import MODALITIES, VideoDataset, collate_videos
from datp.data.dataset import subset_transform as make_subset_transform
from datp.data.device_decode import decodes_on_device
from datp.data.feature_dataset import FeatureDataset, feature_dataset
from datp.data.features import FeatureReading, FeatureSet
from datp.data.formats import dataset_format, media_folder, read_split
from datp.data.sources import SourceOpener, features_folder, flow_folder
from datp.data.splits import split_fingerprint, warn_repeats
from datp.data.transforms import EvalTransform, TrainTransform
from datp.data.video import DECODERS, OpenReaders
from datp.errors import DataError, InputError
from datp.scoring import short_video_warning

log = logging.getLogger(__name__)


DEFAULTS = DataConfig()
"""The section's defaults, for the commands that take a data setting as an option."""


# --- settings resolved for a device -----------------------------------------------------------

NORMALIZE_ON_CPU = True
"""What ``data.normalize_on_device = "auto"`` means on a CPU: normalizing after the loader costs
fewer CPU milliseconds per clip there too (it collates a quarter of the bytes): RGB 21.8 against
22.9 ms, flow 48 against 65 ms (benchmarks/transfer_bytes.py --time, 2026-12-05, busy 2-core
machine, process time)."""


def normalizes_on_device(setting: bool | str, device: str) -> bool:
    """Whether clips leave the loader uint8 and are normalized by the engine's forward pass:
    ``data.normalize_on_device`` (true, false or "auto") for the model on ``device``; "auto" is
    true on CUDA (a quarter of the bytes to copy, no float work in the workers) and
    :data:`NORMALIZE_ON_CPU` elsewhere."""
    if setting != "auto":
        return bool(setting)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return True if cuda else NORMALIZE_ON_CPU


MAX_AUTO_WORKERS = 16
"""Where ``data.workers = "auto"`` stops: about what an H100 step eats of JPEG RGB clips
(earlier H100-host figures: 157 clips/s a process, about 1,090 the step)."""


def loader_workers(setting: int | str) -> int:
    """``data.workers``: a number, or "auto": the cores this process may use (its affinity, shared
    among torchrun's processes on the node), less one for the process itself."""
    if setting != "auto":
        return int(setting)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(MAX_AUTO_WORKERS, cores // local - 1))


def input_channels(data: DataConfig) -> int:
    """D_in: 3 for RGB, 2L for a stack of L flow fields."""
    return MODALITIES[data.modality].channels(data.flow_length)


def frames_per_segment(data: DataConfig) -> int:
    """L for flow, 1 for RGB."""
    return MODALITIES[data.modality].frames_per_segment(data.flow_length)


def subset_transform(data: DataConfig, subset: str, *, normalize: bool = True
                     ) -> TrainTransform | EvalTransform:
    """The transform of a subset ("train" or "test"), normalizing unless told not to."""
    return make_subset_transform(subset, image_size=data.image_size, modality=data.modality,
                                 resize_short=data.resize_short or None, flip=data.flip,
                                 test_crops=data.test_crops, normalize=normalize)


def test_batch_size(data: DataConfig, batch_size: int) -> int:
    """Videos per test batch: a training batch of ``batch_size`` videos in images, over the
    crops of each test video."""
    return max(1, batch_size // max(data.test_crops, 1))


def flow_source(data: DataConfig) -> Path | None:
    """The folder a flow stream's flow lies in (None for RGB, and for features)."""
    if data.modality != "flow" or data.source == "features":
        return None
    return flow_folder(data.root, data.flow_root)


# --- features (source "features") -------------------------------------------------------------

def reads_features(data: DataConfig) -> bool:
    """Whether the model reads feature vectors rather than frames."""
    return data.source == "features"


def feature_reading(data: DataConfig) -> FeatureReading:
    """How the features folder is read (``data.features_*``; 0 and "" are settings not given)."""
    return FeatureReading(
        layout=data.features_layout, stride=data.features_stride or None,
        window=data.features_window or None, fps=data.features_fps or None,
        info=Path(data.root) / data.features_info if data.features_info else None,
        key=data.features_key or None)


class FeatureSets:
    """The feature set of each media folder (a subset's, for formats that keep the subsets
    apart), opened once: what a split reader asks whether a video has features."""

    def __init__(self, reading: FeatureReading, top: Path) -> None:
        self.reading = reading
        self.top = top
        """The features folder (``data.features_root``) the media folders lie in."""
        self.opened: dict[Path, FeatureSet] = {}

    def open(self, media: Path) -> FeatureSet:
        if media not in self.opened:
            self.opened[media] = self.reading.open(media, top=self.top)
        return self.opened[media]

    def exists(self, media: Path, video: str) -> bool:
        return self.open(media).exists(video)


def feature_set(data: DataConfig, *, subset: str = "train") -> FeatureSet:
    """The feature set a subset's videos are read from: ``data.features_root`` (or, for a
    format whose subsets lie apart, its subset's folder there), with ``data.features_*``."""
    top = features_folder(data.root, data.features_root)
    media = media_folder(root=top, format=data.format, subset=subset, source="features")
    return feature_reading(data).open(media, top=top)


def feature_record(data: DataConfig) -> dict | None:
    """Which features a run trains on, made how (the set's ``describe()``), kept in its
    checkpoints so that prediction reads (and extracts) features the same way; None for frames."""
    return feature_set(data).describe() if reads_features(data) else None


def segment_shape(data: DataConfig, *, feature_channels: int | None = None) -> tuple[int, ...]:
    """What a model reads of one segment: ``(D_in, S, S)`` for frames or flow, ``(D,)`` for
    features (D: ``feature_channels`` when given, e.g. a checkpoint's own, else the feature
    set's)."""
    if reads_features(data):
        return (feature_channels or feature_set(data).channels(),)
    return (input_channels(data), data.image_size, data.image_size)


# --- datasets ---------------------------------------------------------------------------------

def build_dataset(data: DataConfig, *, subset: str, device: str = "cpu"
                  ) -> VideoDataset | FeatureDataset:
    """The dataset of one subset ("train" or "test") of the dataset ``data`` describes, for a
    model on ``device`` (where it decodes and normalizes): ``data.num_segments`` segments in
    training, ``data.test_segments`` x ``data.test_crops`` views in testing.

    Where the media are looked for: ``root/videos`` (or ``UCF-101``, ``hmdb51``, Kinetics'
    ``videos_train`` / ``videos_val``) for ``source="video"``, ``root/rawframes`` or
    ``root/frames`` for ``source="frames"`` (folders named like the video without its
    extension), and ``flow_root`` (default ``root/flow``) for flow, laid out like the frame
    folders; for ``source="features"`` the feature files under ``data.features_root``
    (:func:`feature_set`), a :class:`FeatureDataset`. Files the annotations name but that do
    not exist are an error listing all of them, or, with ``skip_bad_videos``, are dropped with
    one logged warning each.
    """
    if data.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got "
                         f"{data.modality!r}")
    if reads_features(data):
        return _feature_dataset(data, subset=subset)
    if data.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {data.decoder!r}")
    if not Path(data.root).is_dir():  # the cause, before the annotation file it would miss
        what = "is not a folder" if Path(data.root).exists() else "does not exist"
        raise DataError(f"{data.root}: the dataset's root folder (data.root) {what}")
    transform = subset_transform(data, subset, normalize=not normalizes_on_device(
        data.normalize_on_device, device))
    split_data, media = read_split(
        root=data.root, format=data.format, subset=subset, split=data.split,
        annotations=data.annotations, train_list=data.train_list, test_list=data.test_list,
        source=data.source)
    warn_repeats(split_data)
    opener = _opener(data, media)
    items, problems = opener.existing(split_data, skip_bad_videos=data.skip_bad_videos)
    return VideoDataset(
        items=items, classes=split_data.classes, open_source=opener, modality=data.modality,
        num_segments=data.num_segments if subset == "train" else data.test_segments,
        flow_length=data.flow_length, train=subset == "train", transform=transform,
        skip_bad_videos=data.skip_bad_videos, missing=problems,
        decode_on_device=decodes_on_device(data.decode, device=device,
                                           jpeg=opener.jpeg_folder(items[0])),
    )


def _feature_dataset(data: DataConfig, *, subset: str) -> FeatureDataset:
    """The subset over its features: ``data.num_segments`` (training) or ``test_segments``
    steps per video, TSN-sampled on the feature timeline (:mod:`datp.data.feature_dataset`)."""
    sets = FeatureSets(feature_reading(data), features_folder(data.root, data.features_root))
    split_data, media = read_split(
        root=data.root, format=data.format, subset=subset, split=data.split,
        annotations=data.annotations, train_list=data.train_list, test_list=data.test_list,
        source="features", media_root=features_folder(data.root, data.features_root),
        exists=sets.exists)
    warn_repeats(split_data)
    features = sets.open(media)
    return feature_dataset(
        split_data, features=features, train=subset == "train",
        num_segments=data.num_segments if subset == "train" else data.test_segments,
        skip_bad_videos=data.skip_bad_videos, channels=features.channels())


def _opener(data: DataConfig, media: Path) -> SourceOpener:
    if data.modality == "flow":
        return SourceOpener(kind="flow", base=flow_folder(data.root, data.flow_root))
    readers = OpenReaders() if data.source == "video" else None
    return SourceOpener(kind=data.source, base=media, decoder=data.decoder, readers=readers)


@dataclass(frozen=True)
class DataBundle:
    """What training needs from the data: both splits and how they are loaded."""

    train: Dataset
    test: Dataset | None
    classes: list[str]
    collate: Callable | None = None
    workers: int = 0
    """Loader processes."""
    test_batch_size: int = 1
    """Videos per test batch."""
    short_video: Callable[[str, int], str | None] | None = None
    """``(video, frames) -> a warning`` when a video is too short for its segments."""


def inapplicable(data: DataConfig) -> list[str]:
    """The settings given that cannot apply to how ``data`` is read (one line each): every
    other setting means the same on every path (tests/data/test_bad_input_paths.py)."""
    lines = []
    media = ("feature files" if data.source == "features" else "flow" if data.modality == "flow"
             else "frame folders" if data.source == "frames" else "")
    if data.decoder != DEFAULTS.decoder and media:
        lines.append(f'data.decoder = "{data.decoder}" decodes video files, and these data are '
                     f"{media}: it does not apply")
    if data.decode == "device" and data.source == "features":
        lines.append('data.decode = "device" decodes JPEG frames, and these data are feature '
                     "files (read as they are): it does not apply")
    return lines


def build_data(data: DataConfig, *, batch_size: int, device: str = "cpu",
               with_test: bool = True) -> DataBundle:
    """The training split, the test split (when ``with_test``) and the class names, once the
    memory of a training batch of ``batch_size`` videos (and of a test batch) is checked; a
    setting that cannot apply to how these data are read is said in one line each."""
    for line in inapplicable(data):
        log.warning("%s", line)
    check_memory(data, what="a training batch", videos=batch_size, segments=data.num_segments,
                 crops=1, settings=(f"train.batch_size = {batch_size}, data.num_segments = "
                                    f"{data.num_segments}, {_sizes(data)}"))
    test_batch = test_batch_size(data, batch_size)
    if with_test:
        check_memory(data, what="a test batch", videos=test_batch, segments=data.test_segments,
                     crops=data.test_crops,
                     settings=(f"train.batch_size = {batch_size}, data.test_segments = "
                               f"{data.test_segments}, data.test_crops = {data.test_crops}, "
                               f"{_sizes(data)}"))
    train = build_dataset(data, subset="train", device=device)
    test = build_dataset(data, subset="test", device=device) if with_test else None
    if test is not None and test.classes != train.classes:
        raise DataError(f"the train and test splits of {data.root} name different classes "
                        f"({len(train.classes)} and {len(test.classes)})")
    if isinstance(test, FeatureDataset) and test.channels != train.channels:
        raise DataError(f"{test.features.root}: test features of D = {test.channels}, but the "
                        f"training features ({train.features.root}) have D = {train.channels} "
                        "(another backbone's features?)")
    return DataBundle(train=train, test=test, classes=list(train.classes), collate=collate_videos,
                      workers=loader_workers(data.workers), test_batch_size=test_batch,
                      short_video=short_video_rule(data))


def short_video_rule(data: DataConfig) -> Callable[[str, int], str | None]:
    """``(video, frames) -> a warning`` when a training video has too few frames (flow fields,
    feature steps) for ``data.num_segments`` segments of its stack length."""
    if reads_features(data):  # a step is one unit, whatever the features were made of
        return partial(short_video_warning, segments=data.num_segments, length=1, flow=False)
    return partial(short_video_warning, segments=data.num_segments,
                   length=frames_per_segment(data), flow=data.modality == "flow")


def build_test_dataset(data: DataConfig, *, classes: list[str], device: str = "cpu",
                       reads: tuple[int, ...] | None = None) -> VideoDataset | FeatureDataset:
    """The test split at ``data.test_segments`` and ``test_crops``; its classes must be
    ``classes``, those a checkpoint was trained on, and for features its D the one the
    checkpoint's model ``reads`` (its :func:`segment_shape`)."""
    test = build_dataset(data, subset="test", device=device)
    if list(test.classes) != list(classes):
        raise DataError(
            f"the test split of {data.root} has {len(test.classes)} classes "
            f"({', '.join(test.classes[:3])}, ...) but the checkpoint was trained on "
            f"{len(classes)} ({', '.join(classes[:3])}, ...)"
        )
    if isinstance(test, FeatureDataset) and reads is not None and (test.channels,) != reads:
        raise DataError(f"{test.features.root}: features of D = {test.channels}, but the "
                        f"checkpoint's head reads D = {reads[0]} (another backbone's features?)")
    return test


# --- what an evaluation records of its data ---------------------------------------------------

def protocol_record(data: DataConfig, *, dataset: Any) -> dict[str, Any]:
    """How the videos of ``dataset`` (the test split) were read, for an evaluation's protocol
    (``datp.engine.protocol``): ``data``, ``test`` (the views; the scheme is the engine's),
    ``modality`` and ``flow``."""
    flow = None
    if data.modality == "flow" and not reads_features(data):
        flow = {"flow_length": data.flow_length, "flow_root": data.flow_root}
    frames = not reads_features(data)
    record = {
        "data": {
            "format": data.format,
            "split": data.split if dataset_format(data.format).numbered_splits else None,
            "annotations": data.annotations,
            "test_list": data.test_list,
            "source": data.source,
            "decoder": data.decoder if frames else None,
            "videos": split_fingerprint(dataset),
        },
        "test": {"segments": data.test_segments, "crops": data.test_crops,
                 "image_size": data.image_size if frames else None,
                 "resize_short": data.resize_short if frames else None},
        "modality": data.modality,
        "flow": flow,
    }
    if not frames:  # which features, made how (FeatureSet.describe)
        record["data"]["features"] = dataset.features.describe()
    return record


# --- memory that follows from the settings, estimated before it is allocated ------------------

ABSURD_BYTES = 1 << 40
"""1 TiB: more than any one batch of clips should ever ask for, whatever the machine."""


def memory_bytes() -> int | None:
    """The memory this process may use: physical memory, or a cgroup (v2) limit below it; None
    where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(int(limit), total) if total else int(limit)
    except OSError:
        pass
    return total


FEATURE_CHANNELS_BOUND = 8192
"""More feature channels than any backbone gives (ViT-H: 1280, VGG's fc7: 4096): what the memory
check assumes of a features folder, whose D it does not open the folder to read."""


def batch_memory(data: DataConfig, *, videos: int, segments: int, crops: int) -> int:
    """Bytes of ``videos`` clips at ``segments`` x ``crops``: the float32 network input
    ``[videos * crops, N, D_in, S, S]`` plus the frames decoded for it, resized to the short side
    ``resize_short`` (16:9 frames assumed), as uint8; for features the float32 ``[videos, N,
    D]`` at most (:data:`FEATURE_CHANNELS_BOUND`)."""
    if reads_features(data):
        return videos * crops * segments * FEATURE_CHANNELS_BOUND * 4
    side = data.image_size
    values_per_frame = 3 if data.modality == "rgb" else 2
    short = data.resize_short or side
    clip = crops * segments * input_channels(data) * side * side * 4
    decoded = (segments * frames_per_segment(data) * values_per_frame * short
               * (short * 16 // 9))
    return videos * (clip + decoded)


def _sizes(data: DataConfig) -> str:
    return f"data.image_size = {data.image_size}, data.resize_short = {data.resize_short}"


def check_memory(
    data: DataConfig, *, what: str, settings: str, videos: int, segments: int, crops: int,
    available: int | None = None,
) -> None:
    """Raise :class:`InputError` (one line naming ``settings`` and the estimate in GiB) when
    :func:`batch_memory` is above half of ``available`` (default: :func:`memory_bytes`) or above
    ``ABSURD_BYTES``; ``what`` names the batch ("a training batch")."""
    needed = batch_memory(data, videos=videos, segments=segments, crops=crops)
    available = memory_bytes() if available is None else available
    bound = min(ABSURD_BYTES, available // 2) if available else ABSURD_BYTES
    if needed > bound:
        shape = (f"{videos} video(s) x {crops} crop(s) x {segments} segments x "
                 + (f"at most {FEATURE_CHANNELS_BOUND} feature channels" if reads_features(data)
                    else f"{input_channels(data)} x {data.image_size} x {data.image_size}"))
        where = (f"half of this machine's {available / 2**30:.1f} GiB" if available
                 and available // 2 < ABSURD_BYTES else f"{ABSURD_BYTES / 2**30:.0f} GiB")
        raise InputError(
            f"{settings}: {what} of {shape} float32 values, with its decoded frames, needs about "
            f"{needed / 2**30:.1f} GiB, more than {where}; lower them"
        )
