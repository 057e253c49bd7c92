"""Where a whole config becomes what a command runs: a training run, an evaluation, a stream to
predict or export with. The one place that sees every section: it hands each to its part's
builder (``[data]`` to :mod:`datp.data.build`, ``[model]`` and ``[pooling]`` to
:mod:`datp.models.build`) and reads the ``[train]`` section's optimizer and schedule settings.
Everything is built before it runs; the loops below never reach back for the config.

Dimension key: N segments, C classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from datp.checkpoint import CheckpointError
from datp.config import Config, ConfigError, from_dict, to_dict, validate
from datp.data.build import (
    DataBundle,
    build_data,
    build_test_dataset,
    check_memory,
    feature_reading,
    feature_record,
    flow_source,
    frames_per_segment,
    loader_workers,
    protocol_record,
    segment_shape,
    short_video_rule,
    subset_transform,
    test_batch_size,
)
from datp.data.dataset import collate_videos
from datp.data.splits import split_fingerprint
from datp.data.transforms import CROPS
from datp.engine.evaluate import Evaluation, EvaluationRun, apply_scheme, evaluate, scheme_views
from datp.engine.optimizer import OptimizerSettings, Schedule, make_optimizer
from datp.engine.run_folder import resumes
from datp.engine.streams import FeatureStream, Stream, check_segments
from datp.engine.train import TrainingRun
from datp.errors import InputError
from datp.flow.storage import read_settings
from datp.models import TSN, build_network
from datp.models.feature_head import FeatureHead
from datp.run_state import RunIdentity, RunState

log = logging.getLogger(__name__)


# --- the model ----------------------------------------------------------------------------------

def build_model(config: Config, *, num_classes: int, feature_channels: int | None = None
                ) -> TSN | FeatureHead:
    """The network ``config`` describes (:func:`datp.models.build_network`: the TSN on frames,
    a head on features, whose D is ``feature_channels`` or the feature set's), its initial
    parameters drawn from ``config.train.seed`` alone."""
    shape = segment_shape(config.data, feature_channels=feature_channels)
    return build_network(config.model, config.pooling, num_classes=num_classes,
                         segment_shape=shape, num_segments=config.data.num_segments,
                         seed=config.train.seed, channels_last=config.train.channels_last)


def training_model(config: Config, *, num_classes: int, resuming: bool) -> TSN | FeatureHead:
    """The model a run trains: :func:`build_model`, except that a run that resumes takes its
    parameters from its checkpoint, so its pretrained file (or download) is never read: a
    requeued node may not have it."""
    if resuming:
        config = replace(config, model=replace(config.model, pretrained="",
                                               pretrained_classifier=False))
    return build_model(config, num_classes=num_classes)


# --- training -----------------------------------------------------------------------------------

def build_data_bundle(config: Config, *, with_test: bool = True) -> DataBundle:
    """The training split, the test split (when ``with_test``) and the class names."""
    return build_data(config.data, batch_size=config.train.batch_size,
                      device=config.train.device, with_test=with_test)


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


def flow_extraction(config: Config) -> dict | None:
    """How a flow stream's flow was computed (``datp flow``'s record), kept in its checkpoints
    so that prediction computes flow the same way."""
    folder = flow_source(config.data)
    return None if folder is None else read_settings(folder)


def training_run(
    config: Config, run_dir: str | Path, *, resume: bool | str = False,
    data: DataBundle | None = None, model: nn.Module | None = None,
) -> TrainingRun:
    """Everything a run of ``config`` in ``run_dir`` needs: its data and model (built from the
    config unless given, e.g. in-memory data or a toy model), optimizer and schedule, identity
    and the resolved config. ``resume``: True continues the run in ``run_dir``, "auto" continues
    it when it holds a checkpoint (then the model's pretrained file is not read)."""
    run_dir = Path(run_dir)
    data = build_data_bundle(config) if data is None else data
    if data.short_video is None:  # data built elsewhere: warn about short videos all the same
        data = replace(data, short_video=short_video_rule(config.data))
    if model is None:
        model = training_model(config, num_classes=len(data.classes),
                               resuming=resumes(run_dir, resume))
    identity = RunIdentity(classes=list(data.classes), split=split_fingerprint(data.train),
                           world_size=None, flow_extraction=flow_extraction(config),
                           feature_set=feature_record(config.data))
    return TrainingRun(run_dir=run_dir, settings=config.train, data=data, model=model,
                       optimizer=optimizer_settings(config),
                       schedule=learning_rate_schedule(config), identity=identity,
                       config=to_dict(config), resume=resume)


# --- a trained model, rebuilt from its checkpoint ---------------------------------------------

class TrainedModel(NamedTuple):
    model: TSN | FeatureHead
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
    views_from: str | None = None,
) -> TrainedModel:
    """Rebuild the model a training checkpoint describes, with its parameters, on the CPU.

    ``overrides`` (``section.key=value``) change the saved config (e.g. ``data.root`` on another
    machine); ``segments`` and ``crops`` replace its ``test_segments`` and ``test_crops``; the
    memory check counts one video, or a whole test batch when ``batches`` (evaluation);
    ``views_from`` says where those views came from in an error (default: the flags). The
    pretrained file training started from (a path on the training machine) is not read: the
    parameters come from the checkpoint. Raises ``CheckpointError`` naming the file when it is
    missing, unsafe, or does not fit the configuration it carries.
    """
    path = Path(checkpoint)
    saved = RunState.load_trained(path)  # weights_only=True: no pickled object is ever executed
    classes = saved.identity.classes
    config = _test_views(_saved_config(path, saved, overrides), path, segments=segments,
                         crops=crops, batches=batches, views_from=views_from)
    # Partial BN only matters in training; the statistics come from the checkpoint.
    config = replace(config, model=replace(config.model, pretrained="",
                                           pretrained_classifier=False, partial_bn=False))
    # A head on features reads the D its classifier was trained on (its folder may be elsewhere).
    classifier = saved.model.get("fc.weight")
    channels = classifier.shape[1] if isinstance(classifier, Tensor) else None
    model = build_model(config, num_classes=len(classes), feature_channels=channels)
    try:
        model.load_state_dict(saved.model)
    except RuntimeError as error:
        details = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise CheckpointError(
            f"{path}: checkpoint parameters do not fit the model its configuration describes "
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
            f"{path}: checkpoint configuration does not match this version of datp: {error}"
        ) from error
    config = from_dict(saved.config, origin=str(path), overrides=overrides)  # blames --set
    classes = saved.identity.classes
    classifier = saved.model.get("fc.weight")
    if isinstance(classifier, Tensor) and classifier.shape[0] != len(classes):
        raise CheckpointError(
            f"{path}: checkpoint names {len(classes)} classes but its classifier has "
            f"{classifier.shape[0]} outputs"
        )
    return config


def _test_views(
    config: Config, path: Path, *, segments: int | None, crops: int | None, batches: bool,
    views_from: str | None = None,
) -> Config:
    """``config`` with ``segments`` and ``crops`` as its test views, once one test video (or a
    test batch, with ``batches``) is checked to fit in memory."""
    if segments is not None and segments < 1:
        raise InputError(f"the number of segments must be >= 1, got {segments}")
    if crops is not None and crops not in CROPS:
        raise InputError(f"the number of test crops must be 1, 3 or 10, got {crops}")
    d = config.data
    d = replace(d, test_segments=d.test_segments if segments is None else segments,
                test_crops=d.test_crops if crops is None else crops)
    config = replace(config, data=d)
    if views_from is None:
        flags = _view_flags(segments, crops)
        views_from = f"with {flags}" if flags else ""
    validate(config, origin=f"{path} {views_from}".strip())
    videos = test_batch_size(d, config.train.batch_size) if batches else 1
    check_memory(
        d, what=f"a test batch of {videos} videos" if batches else "one test video",
        settings=(("--segments " if segments is not None else "data.test_segments = ")
                  + f"{d.test_segments}, " + ("--crops " if crops is not None else
                                               "data.test_crops = ") + f"{d.test_crops}, "
                  f"data.image_size = {d.image_size}, data.resize_short = {d.resize_short}"),
        videos=videos, segments=d.test_segments, crops=d.test_crops,
    )
    return config


# --- evaluation, prediction and export --------------------------------------------------------

def _view_flags(segments: int | None, crops: int | None) -> str:
    """The flags that gave test views, as typed ("" for none)."""
    return " ".join([f"--segments {segments}"] * (segments is not None)
                    + [f"--crops {crops}"] * (crops is not None))


def _views_from(scheme: str, *, segments: int | None, crops: int | None) -> str:
    """Where an evaluation's test views come from, for an error about them."""
    flags = _view_flags(segments, crops)
    return f"under the {scheme} scheme" + (f" with {flags}" if flags else "")


def evaluation_run(
    checkpoint: str | Path, *, scheme: str = "datp", segments: int | None = None,
    crops: int | None = None, overrides: Sequence[str] = (), seed: int = 0,
) -> EvaluationRun:
    """The evaluation of a training checkpoint under a test scheme (``datp.engine.evaluate.
    SCHEMES``): its model with the scheme's pooling and its test split at the scheme's views
    (``segments`` and ``crops`` replace them; ``overrides`` change the saved config, e.g.
    ``data.root=...`` on another machine; ``seed`` draws the p1 random Gaussians)."""
    views = scheme_views(scheme)
    model, config, classes, extraction = model_from_checkpoint(
        checkpoint, overrides=overrides, batches=True,
        segments=segments if segments is not None else views.segments,
        crops=crops if crops is not None else views.crops,
        views_from=_views_from(scheme, segments=segments, crops=crops),
    )
    apply_scheme(model, scheme, config.pooling.kind, seed=seed)
    d, t = config.data, config.train
    reads = segment_shape(d, feature_channels=getattr(model, "feature_channels", None))
    dataset = build_test_dataset(d, classes=classes, device=t.device, reads=reads)
    return EvaluationRun(
        checkpoint=Path(checkpoint), scheme=scheme, model=model, dataset=dataset,
        collate=collate_videos, classes=classes, batch_size=test_batch_size(d, t.batch_size),
        workers=loader_workers(d.workers), device=t.device, amp=t.amp,
        timeout_minutes=t.distributed_timeout_minutes,
        record=protocol_record(d, dataset=dataset), flow_extraction=extraction,
        segments=d.test_segments, crops=d.test_crops,
    )


def evaluate_checkpoint(
    checkpoint: str | Path, *, scheme: str = "datp", segments: int | None = None,
    crops: int | None = None, overrides: Sequence[str] = (), seed: int = 0,
    out_dir: Path | None = None, progress: Callable[[int, int], None] | None = None,
    confusion_figure: bool = False,
) -> Evaluation:
    """:func:`evaluation_run` then :func:`datp.engine.evaluate.evaluate`, in one call."""
    run = evaluation_run(checkpoint, scheme=scheme, segments=segments, crops=crops,
                         overrides=overrides, seed=seed)
    return evaluate(run, out_dir=out_dir, progress=progress, confusion_figure=confusion_figure)


def load_stream(
    checkpoint: str | Path,
    *,
    segments: int | None = None,
    crops: int | None = None,
    overrides: Sequence[str] = (),
    device: str | torch.device = "cpu",
) -> Stream:
    """A training checkpoint's model rebuilt for prediction and export, in eval mode on
    ``device``, with how it reads a video.

    ``segments`` and ``crops`` replace the config's ``test_segments`` and ``test_crops``;
    ``overrides`` (``section.key=value``) change the saved config. Raises ``CheckpointError``
    naming the file when it is missing, unsafe, or does not fit its own configuration, and
    ``InputError`` when its pooling cannot run at ``segments`` (the discrete generator).
    """
    path = Path(checkpoint)
    model, config, classes, extraction = model_from_checkpoint(
        path, overrides=overrides, segments=segments, crops=crops
    )
    d = config.data
    check_segments(model, d.test_segments, path)
    model.to(device).eval()
    feature_stream = None
    if isinstance(model, FeatureHead):  # which features it trained on, made how
        record = RunState.load_trained(path).identity.feature_set or {}
        feature_stream = FeatureStream(record=record, reading=feature_reading(d),
                                       backbone_file=d.features_backbone)
    return Stream(
        checkpoint=path, model=model, classes=list(classes), modality=d.modality,
        segments=d.test_segments, flow_length=frames_per_segment(d), decoder=d.decoder,
        image_size=d.image_size, resize_short=d.resize_short,
        transform=subset_transform(d, "test"), flow_extraction=extraction,
        segment_shape=segment_shape(d, feature_channels=getattr(model, "feature_channels",
                                                                None)),
        features=feature_stream,
    )
