"""The one place where the config becomes objects and explicit arguments: the datasets, the model
and its pooling, the optimizer and the learning-rate schedule, the test transform, the run's
identity, and the plans (small dataclasses) that training and evaluation follow. No module below
this one reads the config dataclasses.

Dimension key: N segments, C classes, D feature channels, L flow-stack length.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from datp.checkpoint import CheckpointError
from datp.config import (
    TEST_CROPS,
    Amp,
    Config,
    ConfigError,
    DataConfig,
    Modality,
    from_dict,
    validate,
)
from datp.data.dataset import build_dataset, collate_videos, subset_transform
from datp.data.errors import DataError
from datp.data.transforms import EvalTransform
from datp.engine.inference import normalizes_on_device
from datp.engine.optimizer import OptimizerSettings, Schedule, make_optimizer
from datp.engine.resume import RunIdentity, split_fingerprint
from datp.engine.run_state import RunState
from datp.errors import InputError
from datp.models import TSN, build_backbone, load_pretrained, take_classifier
from datp.pooling import build_pooling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataBundle:
    """What the training loop needs from the data layer."""

    train: Dataset
    test: Dataset | None
    classes: list[str]
    collate: Callable | None = None


def _dataset(config: Config, subset: str, segments: int) -> Dataset:
    d = config.data
    return build_dataset(
        root=d.root,
        format=d.format,
        split=d.split,
        subset=subset,
        annotations=d.annotations,
        train_list=d.train_list,
        test_list=d.test_list,
        source=d.source,
        flow_root=d.flow_root,
        modality=d.modality,
        num_segments=segments,
        flow_length=d.flow_length,
        image_size=d.image_size,
        resize_short=d.resize_short or None,
        test_crops=d.test_crops,
        skip_bad_videos=d.skip_bad_videos,
        decoder=d.decoder,
        flip=d.flip,
        normalize_on_device=normalizes_on_device(d.normalize_on_device, config.train.device),
        decode=d.decode,
        device=config.train.device,
    )


def build_data_bundle(config: Config, *, with_test: bool = True) -> DataBundle:
    """The training split, the test split (when ``with_test``) and the class names."""
    d = config.data
    check_memory(
        config, what="a training batch",
        settings=(f"train.batch_size = {config.train.batch_size}, data.num_segments = "
                  f"{d.num_segments}, data.image_size = {d.image_size}, data.resize_short = "
                  f"{d.resize_short}"),
        videos=config.train.batch_size, segments=d.num_segments, crops=1,
    )
    if with_test:
        check_memory(
            config, what="a test batch",
            settings=(f"train.batch_size = {config.train.batch_size}, data.test_segments = "
                      f"{d.test_segments}, data.test_crops = {d.test_crops}, data.image_size = "
                      f"{d.image_size}, data.resize_short = {d.resize_short}"),
            videos=test_batch_size(config), segments=d.test_segments, crops=d.test_crops,
        )
    train = _dataset(config, "train", config.data.num_segments)
    test = _dataset(config, "test", config.data.test_segments) if with_test else None
    if test is not None and test.classes != train.classes:
        raise DataError(
            f"the train and test splits of {config.data.root} name different classes "
            f"({len(train.classes)} and {len(test.classes)})"
        )
    return DataBundle(
        train=train, test=test, classes=list(train.classes), collate=collate_videos
    )


def build_test_dataset(config: Config, *, classes: list[str]) -> tuple[Dataset, Callable]:
    """The test split at ``config.data.test_segments`` and ``test_crops``; its classes must be
    those a checkpoint was trained on."""
    test = _dataset(config, "test", config.data.test_segments)
    if list(test.classes) != list(classes):
        raise DataError(
            f"the test split of {config.data.root} has {len(test.classes)} classes "
            f"({', '.join(test.classes[:3])}, ...) but the checkpoint was trained on "
            f"{len(classes)} ({', '.join(classes[:3])}, ...)"
        )
    return test, collate_videos


def test_batch_size(config: Config) -> int:
    """Videos per test batch: the training batch in images, over the crops of each video."""
    return max(1, config.train.batch_size // max(config.data.test_crops, 1))


def test_transform(config: Config) -> EvalTransform:
    """The transform of the test split, normalizing: the one the test dataset applies."""
    d = config.data
    return subset_transform("test", image_size=d.image_size, modality=d.modality,
                            resize_short=d.resize_short or None, flip=d.flip,
                            test_crops=d.test_crops, normalize=True)


def input_channels(config: Config) -> int:
    """3 for RGB; 2L for a stack of L flow fields."""
    return 3 if config.data.modality == "rgb" else 2 * config.data.flow_length


# --- memory that follows from the settings, estimated before it is allocated ----------------------

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


def batch_memory(config: Config, *, videos: int, segments: int, crops: int) -> int:
    """Bytes of ``videos`` clips at ``segments`` x ``crops``: the float32 network input
    ``[videos * crops, N, D_in, S, S]`` plus the frames decoded for it, resized to the short side
    ``resize_short`` (16:9 frames assumed), as uint8."""
    d = config.data
    side = d.image_size
    frames_per_segment = 1 if d.modality == "rgb" else d.flow_length
    values_per_frame = 3 if d.modality == "rgb" else 2
    short = d.resize_short or side
    clip = crops * segments * input_channels(config) * side * side * 4
    decoded = segments * frames_per_segment * values_per_frame * short * (short * 16 // 9)
    return videos * (clip + decoded)


def check_memory(
    config: Config, *, what: str, settings: str, videos: int, segments: int, crops: int,
    available: int | None = None,
) -> None:
    """Raise :class:`InputError` (one line naming ``settings`` and the estimate in GiB) when
    :func:`batch_memory` is above half of ``available`` (default: :func:`memory_bytes`) or above
    ``ABSURD_BYTES``; ``what`` names the batch ("a training batch")."""
    needed = batch_memory(config, videos=videos, segments=segments, crops=crops)
    available = memory_bytes() if available is None else available
    bound = min(ABSURD_BYTES, available // 2) if available else ABSURD_BYTES
    if needed > bound:
        d = config.data
        shape = (f"{videos} video(s) x {crops} crop(s) x {segments} segments x "
                 f"{input_channels(config)} x {d.image_size} x {d.image_size}")
        where = (f"half of this machine's {available / 2**30:.1f} GiB" if available
                 and available // 2 < ABSURD_BYTES else f"{ABSURD_BYTES / 2**30:.0f} GiB")
        raise InputError(
            f"{settings}: {what} of {shape} float32 values, with its decoded frames, needs about "
            f"{needed / 2**30:.1f} GiB, more than {where}; lower them"
        )


def build_model(config: Config, *, num_classes: int) -> TSN:
    """The TSN segment network with the configured backbone and temporal pooling.

    Its initial parameters depend on ``config.train.seed`` only: they are drawn from torch's
    generator seeded with it, inside ``torch.random.fork_rng`` so that the caller's random
    state is left as it was. Two runs of one config start from the same parameters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        return _build_model(config, num_classes=num_classes)


def training_model(config: Config, *, num_classes: int, resuming: bool) -> TSN:
    """The model a run trains: :func:`build_model`, except that a run that resumes takes its
    parameters from its checkpoint, so its pretrained file (or download) is never read: a
    requeued node may not have it."""
    if resuming:
        config = replace(config, model=replace(config.model, pretrained="",
                                               pretrained_classifier=False))
    return build_model(config, num_classes=num_classes)


def _build_model(config: Config, *, num_classes: int) -> TSN:
    m, p = config.model, config.pooling
    if m.partial_bn and not m.pretrained:
        log.warning(
            "model.partial_bn freezes BatchNorm statistics at their initial values when "
            "no pretrained parameters are given; set model.partial_bn=false to train "
            "from scratch"
        )
    pretrained = load_pretrained(m.pretrained, backbone=m.backbone) if m.pretrained else None
    backbone = build_backbone(
        m.backbone, in_channels=input_channels(config), pretrained=pretrained
    )
    probe = TSN(
        backbone=backbone,
        num_classes=num_classes,
        pooling=build_pooling(
            kind="average", num_classes=num_classes, num_segments=1, pool="logits"
        ),
    )
    feature_size = probe.feature_size(config.data.image_size)
    pooling = build_pooling(
        kind=p.kind,
        num_classes=num_classes,
        num_segments=config.data.num_segments,
        pool=p.pool,
        aux_input=p.aux_input,
        feature_channels=backbone.feature_channels,
        feature_size=feature_size,
        generator=p.generator,
        num_gaussians=p.num_gaussians,
        init_sigma=p.init_sigma,
        sigma_floor=p.sigma_floor,
        discrete_activation=p.discrete_activation,
        conv_channels=tuple(p.conv_channels),
        fc_channels=tuple(p.fc_channels),
        reduce_channels=p.reduce_channels,
        normalize_aux_input=p.normalize_aux_input,
        seed=config.train.seed,
    )
    model = TSN(
        backbone=backbone,
        num_classes=num_classes,
        pooling=pooling,
        aux_input=p.aux_input,
        dropout=m.dropout,
        partial_bn=m.partial_bn,
        channels_last=config.train.channels_last,
    )
    if pretrained is not None and m.pretrained_classifier:
        take_classifier(model.fc, pretrained)
    return model


class TrainedModel(NamedTuple):
    model: TSN
    config: Config
    classes: list[str]
    flow_extraction: dict | None = None
    """How the flow a flow stream trained on was computed (``datp flow``'s settings)."""


def model_from_checkpoint(
    checkpoint: str | Path,
    *,
    overrides: Sequence[str] = (),
    segments: int | None = None,
    crops: int | None = None,
    batches: bool = False,
) -> TrainedModel:
    """Rebuild the model a training checkpoint describes, with its parameters, on the CPU.

    ``overrides`` (``section.key=value``) change the saved config (e.g. ``data.root`` on another
    machine); ``segments`` and ``crops`` replace its ``test_segments`` and ``test_crops``; the
    memory check counts one video, or a whole test batch when ``batches`` (evaluation). The
    pretrained file training started from (a path on the training machine) is not read: the
    parameters come from the checkpoint. Raises ``CheckpointError`` naming the file when it is
    missing, unsafe, or does not fit the configuration it carries.
    """
    path = Path(checkpoint)
    saved = RunState.load_trained(path)  # weights_only=True: no pickled object is ever executed
    classes = saved.identity.classes
    config = _saved_config(path, saved, overrides)
    _set_test_views(config, path, segments=segments, crops=crops, batches=batches)
    # Partial BN only matters in training; the statistics come from the checkpoint.
    config.model.pretrained = ""
    config.model.pretrained_classifier = False
    config.model.partial_bn = False
    model = build_model(config, num_classes=len(classes))
    try:
        model.load_state_dict(saved.model)
    except RuntimeError as error:
        details = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise CheckpointError(
            f"checkpoint {path}: its parameters do not fit the model its configuration describes "
            f"(made with another configuration, or --set changed the architecture): {details}"
        ) from error
    extraction = saved.identity.flow_extraction
    return TrainedModel(
        model, config, list(classes), extraction if isinstance(extraction, dict) else None
    )


def _saved_config(path: Path, saved: RunState, overrides: Sequence[str]) -> Config:
    """The configuration a checkpoint carries, with ``overrides``, checked against this version
    of datp and against the classifier it saved."""
    try:
        from_dict(saved.config, origin=str(path))
    except ConfigError as error:
        raise CheckpointError(
            f"checkpoint {path}: its configuration does not match this version of datp: {error}"
        ) from error
    config = from_dict(saved.config, origin=str(path), overrides=overrides)  # blames --set
    classes = saved.identity.classes
    classifier = saved.model.get("fc.weight")
    if isinstance(classifier, Tensor) and classifier.shape[0] != len(classes):
        raise CheckpointError(
            f"checkpoint {path} names {len(classes)} classes but its classifier has "
            f"{classifier.shape[0]} outputs"
        )
    return config


def _set_test_views(
    config: Config, path: Path, *, segments: int | None, crops: int | None, batches: bool
) -> None:
    """Put ``segments`` and ``crops`` into ``config`` as its test views, and check that one test
    video (or a test batch, with ``batches``) fits in memory."""
    if segments is not None:
        if segments < 1:
            raise InputError(f"the number of segments must be >= 1, got {segments}")
        config.data.test_segments = segments
    if crops is not None:
        if crops not in TEST_CROPS:
            raise InputError(f"the number of test crops must be 1, 3 or 10, got {crops}")
        config.data.test_crops = crops
    validate(config, origin=f"{path} with --segments / --crops")
    d = config.data
    videos = test_batch_size(config) if batches else 1
    check_memory(
        config, what=f"a test batch of {videos} videos" if batches else "one test video",
        settings=(("--segments " if segments is not None else "data.test_segments = ")
                  + f"{d.test_segments}, " + ("--crops " if crops is not None else
                                               "data.test_crops = ") + f"{d.test_crops}, "
                  f"data.image_size = {d.image_size}, data.resize_short = {d.resize_short}"),
        videos=videos, segments=d.test_segments, crops=d.test_crops,
    )


# --- the optimizer, the schedule and the plans ----------------------------------------------------

def optimizer_settings(config: Config) -> OptimizerSettings:
    t = config.train
    return OptimizerSettings(kind=t.optimizer, lr=t.lr, momentum=t.momentum,
                             weight_decay=t.weight_decay, pooling_lr_factor=t.pooling_lr_factor)


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """The optimizer ``config.train`` describes, over ``model``'s parameters."""
    return make_optimizer(model, optimizer_settings(config))


def learning_rate_schedule(config: Config) -> Schedule:
    t = config.train
    return Schedule(kind=t.schedule, epochs=t.epochs, warmup_epochs=t.warmup_epochs,
                    lr_steps=tuple(t.lr_steps))


@dataclass(frozen=True)
class TrainingPlan:
    """What the training loop (:mod:`datp.engine.train`) follows, read from the config here."""

    epochs: int
    batch_size: int
    test_batch_size: int
    workers: int
    seed: int
    device: str
    amp: Amp
    clip_grad: float
    channels_last: bool
    compile: bool
    partial_bn: bool
    eval_every: int
    max_steps_per_epoch: int
    distributed_timeout_minutes: float
    optimizer: OptimizerSettings
    schedule: Schedule
    modality: Modality
    segments: int
    """N in training."""
    flow_length: int
    """L, frames per segment (1 for RGB)."""


def training_plan(config: Config) -> TrainingPlan:
    t, d = config.train, config.data
    return TrainingPlan(
        epochs=t.epochs, batch_size=t.batch_size, test_batch_size=test_batch_size(config),
        workers=d.workers, seed=t.seed, device=t.device, amp=t.amp, clip_grad=t.clip_grad,
        channels_last=t.channels_last, compile=t.compile, partial_bn=config.model.partial_bn,
        eval_every=t.eval_every, max_steps_per_epoch=t.max_steps_per_epoch,
        distributed_timeout_minutes=t.distributed_timeout_minutes,
        optimizer=optimizer_settings(config), schedule=learning_rate_schedule(config),
        modality=d.modality, segments=d.num_segments,
        flow_length=d.flow_length if d.modality == "flow" else 1,
    )


def flow_extraction(config: Config) -> dict | None:
    """How a flow stream's flow was computed (``datp flow``'s record), kept in its checkpoints
    so that prediction computes flow the same way."""
    if config.data.modality != "flow":
        return None
    from datp.data.dataset import flow_folder
    from datp.flow.storage import read_settings

    return read_settings(flow_folder(config.data.root, config.data.flow_root))


def run_identity(config: Config, data: DataBundle, *, world_size: int) -> RunIdentity:
    """Classes, split fingerprint, world size, flow extraction: saved, compared on resume."""
    return RunIdentity(
        classes=list(data.classes), split=split_fingerprint(data.train),
        world_size=world_size, flow_extraction=flow_extraction(config),
    )


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation of a checkpoint (:mod:`datp.engine.evaluate`) follows."""

    trained_pooling: str
    device: str
    amp: Amp
    batch_size: int
    workers: int
    distributed_timeout_minutes: float
    segments: int
    crops: int
    data: DataConfig
    """The data settings the evaluation ran with, for its protocol (:mod:`datp.engine.protocol`)."""


def evaluation_plan(config: Config) -> EvaluationPlan:
    t, d = config.train, config.data
    return EvaluationPlan(
        trained_pooling=config.pooling.kind, device=t.device, amp=t.amp,
        batch_size=test_batch_size(config), workers=d.workers,
        distributed_timeout_minutes=t.distributed_timeout_minutes,
        segments=d.test_segments, crops=d.test_crops, data=d,
    )


@dataclass(frozen=True)
class StreamPlan:
    """How a trained stream reads a video at test time (:mod:`datp.engine.streams`)."""

    modality: Modality
    segments: int
    """N at test time."""
    flow_length: int
    """L, frames per segment (1 for RGB)."""
    decoder: str
    image_size: int
    resize_short: int
    """0: the short side resized to ``image_size``."""
    transform: EvalTransform


def stream_plan(config: Config) -> StreamPlan:
    d = config.data
    return StreamPlan(
        modality=d.modality, segments=d.test_segments,
        flow_length=d.flow_length if d.modality == "flow" else 1, decoder=d.decoder,
        image_size=d.image_size, resize_short=d.resize_short, transform=test_transform(config),
    )
