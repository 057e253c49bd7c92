"""Typed run configuration: dataclasses loaded from flat TOML files, with ``--set a.b=v`` overrides.

Strict: an unknown section or key is an error that suggests the closest valid name, and every value
is checked when the config is loaded: its type, then the rule written beside its field (a range, a
pattern) or the choices of its ``Literal`` type, then the few rules that tie fields together
(``_CROSS_RULES``). An error names where the value came from (the TOML file, or the ``--set``
argument that gave it), the key, the value and what is allowed; every problem found is reported at
once. The resolved config is saved in the run folder and inside every checkpoint (``to_dict`` /
``from_dict``, which validates too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datp.choices import (
    MAX_BATCH_SIZE,
    MAX_FLOW_LENGTH,
    MAX_IMAGE_SIZE,
    MAX_SEGMENTS,
    MAX_SHORT_SIDE,
    Amp,
    AuxInput,
    Backbone,
    DecodePlace,
    Decoder,
    DiscreteActivation,
    FeatureLayout,
    Format,
    GeneratorKind,
    Modality,
    OptimizerKind,
    PoolingKind,
    PoolSpace,
    ScheduleKind,
    Source,
    TestCrops,
    is_weights_name,
)
from datp.errors import UserError

log = logging.getLogger(__name__)


class ConfigError(UserError, ValueError):
    """A configuration file or override that does not match the schema."""


# --- what a field accepts -------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """A finite number within bounds (None: no bound on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"must be a finite number {self}"
        fits = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le))
        return None if fits else f"must be {self}"

    def __str__(self) -> str:
        bounds = [f"{op} {bound}" for op, bound in ((">=", self.ge), (">", self.gt),
                                                    ("<=", self.le)) if bound is not None]
        return " and ".join(bounds)


@dataclass(frozen=True)
class OneOf:
    choices: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        # by type too: 1 == True, but data.normalize_on_device = 1 is not a choice
        if any(value == c and type(value) is type(c) for c in self.choices):
            return None
        names = [c for c in self.choices if isinstance(c, str)]
        hint = _suggest(value, names) if isinstance(value, str) else ""
        shown = (str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        return f"must be one of {', '.join(shown)}{hint}"


@dataclass(frozen=True)
class Matches:
    """A string matching ``pattern`` entirely; ``words`` are its plain forms, for suggestions."""

    pattern: str
    description: str
    words: tuple[str, ...] = ()

    def problem(self, value: str) -> str | None:
        if re.fullmatch(self.pattern, value):
            return None
        return f"must be {self.description}{_suggest(value, self.words)}"


@dataclass(frozen=True)
class Each:
    """Every item of a list obeys ``rule``."""

    rule: Range

    def problem(self, values: list[float]) -> str | None:
        for i, value in enumerate(values):
            problem = self.rule.problem(value)
            if problem is not None:
                return f"item {i} is {value}: {problem}"
        return None


@dataclass(frozen=True)
class OrAuto:
    """``"auto"``, or an integer that obeys ``rule``."""

    rule: Range

    def problem(self, value: Any) -> str | None:
        if value == "auto":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return self.rule.problem(value)
        return f'must be "auto" or an integer {self.rule}{_suggest(str(value), ("auto",))}'


Rule = Range | OneOf | Matches | Each | OrAuto


def _field(default: Any, rule: Rule | None = None, *, resumable: str | None = None) -> Any:
    """A dataclass field whose value ``rule`` checks when a config is loaded (a ``Literal`` field
    needs none: its choices are its rule). ``resumable`` says why the setting may change when a
    run resumes without altering what has been learned so far (None: it may not change)."""
    metadata = {"rule": rule, "resumable": resumable}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# The choices are Literal types of datp.choices (a foundation: loading a config imports no torch);
# the validator checks a value against its field's Literal.
DEVICE = Matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda, cuda:N or mps",
                 ("auto", "cpu", "cuda", "mps"))  # engine.inference.resolve_device

AT_LEAST_0 = Range(ge=0)
AT_LEAST_1 = Range(ge=1)
POSITIVE = Range(gt=0)

SEGMENTS = Range(ge=1, le=MAX_SEGMENTS)
FLOW_LENGTH = Range(ge=1, le=MAX_FLOW_LENGTH)
IMAGE_SIZE = Range(ge=1, le=MAX_IMAGE_SIZE)
RESIZE_SHORT = Range(ge=0, le=MAX_SHORT_SIDE)
BATCH_SIZE = Range(ge=1, le=MAX_BATCH_SIZE)


@dataclass
class DataConfig:
    root: str = _field("data/synthetic", resumable="where the data lies (the split itself is "
                       "compared by its fingerprint)")
    """Dataset root: videos (or frame folders) and the annotation files."""
    format: Format = "ucf101"
    """ucf101 | hmdb51 | kinetics | list | folders (see datp.data.splits)."""
    split: int = _field(1, AT_LEAST_1)
    """Official split number (UCF101 and HMDB51: 1, 2, 3)."""
    annotations: str = _field("", resumable="where the annotations lie (compared by the "
                              "split's fingerprint)")
    """Annotation folder or file, relative to root; empty: the format's usual place."""
    train_list: str = _field("", resumable="where the training list lies (compared by the "
                             "split's fingerprint)")
    """List file for format "list" (``path [num_frames] label``)."""
    test_list: str = _field("", resumable="the test list: evaluation only")
    source: Source = "video"
    """video (decode files) | frames (img_%05d.jpg folders) | features (per-video feature
    sequences of a frozen backbone, ``datp features``' or another layout: ``features_*``)."""
    decoder: Decoder = _field("pyav", resumable="both decoders give the same frames")
    """Video decoder for source "video": pyav (default, bundles FFmpeg) | torchcodec (optional;
    needs pip install torchcodec and FFmpeg's shared libraries). Both seek frame-exactly."""
    flow_root: str = _field("", resumable="where the flow lies")
    """Where extracted flow lives, for modality "flow"; empty: root/flow."""
    features_root: str = _field("", resumable="where the features lie (what they are is "
                                "compared: their set's record)")
    """Where the feature files lie for source "features": a ``datp features`` output folder, an
    ActionFormer / OpenTAD folder of ``.npy`` windows or a video_features folder: datp's laid
    out like the videos (``<video without extension>.npy``), windows nested so or flat,
    video_features flat as it writes them; empty: root/features; an absolute path replaces
    root."""
    features_layout: FeatureLayout = "auto"
    """datp | windows (ActionFormer, OpenTAD, VideoMAEv2: ``.npy`` only) | video_features |
    auto (datp where datp_features.json is, video_features where *_timestamps_ms.npy are, else
    windows)."""
    features_stride: float = _field(0.0, AT_LEAST_0)
    """Windows layout: frames from one step to the next (ActionFormer's feat_stride); 0: not
    given (a windows folder then refuses to load, naming this setting)."""
    features_window: float = _field(0.0, AT_LEAST_0)
    """Windows layout: frames each step reads (ActionFormer's num_frames); 0: not given."""
    features_fps: float = _field(0.0, AT_LEAST_0)
    """Windows layout: the videos' frame rate (wins over features_info's); 0: not given."""
    features_info: str = ""
    """Windows layout: an ActivityNet-style JSON (database -> id -> fps, duration), relative to
    root."""
    features_key: str = ""
    """video_features layout: which feature kind to read (clip, resnet, rgb, flow, ...) when
    the folder holds several."""
    features_backbone: str = _field("", resumable="read by datp predict only")
    """For ``datp predict`` on a video with a head trained on features made from a local file
    (a datp checkpoint or a parameter file): that file, checked against the SHA-256 the
    features recorded. Backbones by torchvision weights name need none."""
    modality: Modality = "rgb"
    """rgb | flow (with source "features": which stream the features are of, for fusion)."""
    num_segments: int = _field(10, SEGMENTS)
    """N in training (the paper: 10 for training and testing)."""
    test_segments: int = _field(10, SEGMENTS, resumable="evaluation only")
    """N at test time (TSN tests 25; DATP with a mixture runs at any N)."""
    flow_length: int = _field(5, FLOW_LENGTH)
    """L, flow fields stacked per segment (TSN: 5, i.e. 10 channels)."""
    image_size: int = _field(224, IMAGE_SIZE)
    """Side of the square network input."""
    resize_short: int = _field(256, RESIZE_SHORT)
    """Short side frames are resized to before cropping (TSN: 256 from 340 x 256 frames); 0: no
    resizing in training, the short side resized to image_size at test time."""
    test_crops: TestCrops = _field(1, resumable="evaluation only")
    """1 (centre), 3 or 10 (TSN's ten-crop)."""
    flip: bool = True
    """Random horizontal flips in training (negating x flow). Turn off where left and right
    carry the label, as in the synthetic benchmark, whose classes move left or right."""
    normalize_on_device: bool | str = _field("auto", OneOf(("auto", True, False)),
                                             resumable="the same normalization, computed "
                                             "elsewhere")
    """true: leave clips uint8 in the loader and normalize each batch on the model's device (a
    quarter of the bytes to copy to a GPU, no float work in the loader workers); false: the
    loader workers normalize; auto: true, on CUDA and on a CPU alike (measured the faster on both:
    datp.data.build.NORMALIZE_ON_CPU, BENCHMARKS.md)."""
    decode: DecodePlace = "auto"
    """Where JPEG frame and flow folders are decoded: workers (the loader processes, cv2 or
    Pillow) | device (the workers read bytes; torchvision's decode_jpeg, crops and flips run on
    the model's device a batch at a time: nvjpeg on a GPU) | auto (device on CUDA for JPEG
    folders, workers otherwise; the workers are faster on a CPU)."""
    workers: int | str = _field("auto", OrAuto(AT_LEAST_0), resumable="loader processes")
    """Loader processes; auto: the cores this process may use, less one for itself, at most 16
    (under torchrun the node's cores shared among its processes)."""
    skip_bad_videos: bool = _field(False, resumable="whether a bad video stops the run")
    """Skip unreadable videos in training (each skip is logged) instead of stopping."""


@dataclass
class ModelConfig:
    backbone: Backbone = "resnet34"
    pretrained: str = _field("", resumable="the parameters come from the checkpoint")
    """Where the backbone's initial parameters come from: "imagenet" (the backbone's default
    torchvision ImageNet parameters), a torchvision weights name ("ResNet34_Weights.IMAGENET1K_V1"),
    both downloaded once into torch hub's cache ($TORCH_HOME); or a local file: a torchvision state
    dict, a datp checkpoint, or an mmaction2 TSN checkpoint. Empty: from scratch."""
    pretrained_classifier: bool = _field(False, resumable="the parameters come from the "
                                         "checkpoint")
    """Also take the classifier of a datp or mmaction2 checkpoint in model.pretrained (its class
    count must be the dataset's); false: a new classifier."""
    dropout: float = _field(0.5, Range(ge=0, le=1))
    partial_bn: bool = True
    """TSN's partial BN: freeze every BatchNorm but the first after the first epoch."""


@dataclass
class PoolingConfig:
    kind: PoolingKind = "datp"
    """datp | average | max | attention | random_gaussians."""
    pool: PoolSpace = "probabilities"
    """What Eq. (3) pools: probabilities (the paper) or logits (TSN)."""
    aux_input: AuxInput = "conv"
    """What the auxiliary net reads (paper Table 1): scores (the per-segment softmax scores),
    sequence (the backbone's pooled per-segment features [N, D]) or conv (its last conv maps)."""
    generator: GeneratorKind = "mog"
    """mog | discrete."""
    discrete_activation: DiscreteActivation = "identity"
    """Discrete weights: identity (the paper: w = theta, may turn negative) | softplus
    (non-negative; see docs/RESULTS.md, Table 3)."""
    num_gaussians: int = _field(2, AT_LEAST_1)
    init_sigma: float = _field(0.2, POSITIVE)
    sigma_floor: float = _field(0.05, POSITIVE)
    """Smallest sigma a Gaussian can take; below init_sigma."""
    conv_channels: list[int] = _field([32, 32], Each(AT_LEAST_1))
    fc_channels: list[int] = _field([128], Each(AT_LEAST_1))
    reduce_channels: int = _field(64, AT_LEAST_1)
    normalize_aux_input: bool = True
    """Normalize each video's feature sequence (mean and RMS over N and D) before the temporal
    convolutions (not in Table 2; see docs/DESIGN.md)."""


@dataclass
class TrainConfig:
    epochs: int = _field(30, AT_LEAST_1, resumable="more (or fewer) epochs of the same step "
                         "schedule (not with a cosine schedule, whose length is its epochs)")
    optimizer: OptimizerKind = "sgd"
    """sgd (TSN, for ImageNet-initialized backbones) | adamw (faster from scratch)."""
    batch_size: int = _field(8, BATCH_SIZE)
    lr: float = _field(0.001, POSITIVE)
    momentum: float = _field(0.9, Range(ge=0, le=1))
    pooling_lr_factor: float = _field(1.0, AT_LEAST_0)
    """Learning rate of the pooling module's parameters (DATP's auxiliary net) relative to lr."""
    weight_decay: float = _field(5e-4, AT_LEAST_0)
    schedule: ScheduleKind = "step"
    """step | cosine."""
    lr_steps: list[int] = _field([20, 25], Each(AT_LEAST_0))
    """Epochs at which the step schedule divides the learning rate by 10."""
    warmup_epochs: int = _field(0, AT_LEAST_0)
    clip_grad: float = _field(40.0, AT_LEAST_0)
    """Max gradient norm (TSN: 40 RGB, 20 flow); 0 disables clipping."""
    amp: Amp = "none"
    """none | bf16 | fp16 (CUDA only) | auto (bf16 where the device computes it natively: CUDA, a
    CPU with AMX or AVX512-BF16; none elsewhere, where bf16 is emulated and slower)."""
    channels_last: bool = _field(False, resumable="how it runs")
    compile: bool | str = _field(False, OneOf(("auto", True, False)), resumable="how it runs")
    """Compile the training step (torch.compile): true | false | auto (on CUDA only, where fusing
    kernels pays for the minutes it takes; on a CPU it gains little)."""
    seed: int = _field(0, Range(ge=0, le=2**32 - 1))
    device: str = _field("auto", DEVICE, resumable="where it runs")
    """auto | cpu | cuda | cuda:N | mps."""
    eval_every: int = _field(1, AT_LEAST_0, resumable="evaluation only")
    """Evaluate on the test split every this many epochs (0: only at the end)."""
    max_steps_per_epoch: int = _field(0, AT_LEAST_0)
    """Stop an epoch after this many steps (0: the whole epoch). For smoke tests."""
    distributed_timeout_minutes: float = _field(120.0, POSITIVE, resumable="how long processes "
                                                "wait for each other")
    """How long processes of a torchrun run wait for each other (rank 0 evaluates and saves
    while the others wait); torch's own default, 10 minutes, is shorter than a large test pass."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --- rules that tie fields together -------------------------------------------------------------
# Each returns None or a message that names the keys and their values.

def _crop_fits(c: Config) -> str | None:
    d = c.data
    if d.resize_short and d.image_size > d.resize_short:
        return (f"data.image_size = {d.image_size} is larger than data.resize_short = "
                f"{d.resize_short}: the test crop would not fit in the resized frame; lower "
                "image_size, raise resize_short, or set resize_short = 0 (resize to image_size)")
    return None


def _discrete_segments(c: Config) -> str | None:
    p, d = c.pooling, c.data
    if p.kind == "datp" and p.generator == "discrete" and d.test_segments != d.num_segments:
        return (f'pooling.generator = "discrete" learns one weight per segment, so '
                f"data.test_segments = {d.test_segments} must equal data.num_segments = "
                f'{d.num_segments}; a "mog" generator tests at any N')
    return None


def _sigma_floor_below_init(c: Config) -> str | None:
    p = c.pooling
    if p.kind == "datp" and p.generator == "mog" and not p.sigma_floor < p.init_sigma:
        return (f"pooling.sigma_floor = {p.sigma_floor} must be below pooling.init_sigma = "
                f"{p.init_sigma}")
    return None


def _fp16_needs_cuda(c: Config) -> str | None:
    t = c.train
    if t.amp == "fp16" and not (t.device == "auto" or t.device.startswith("cuda")):
        return (f'train.amp = "fp16" needs CUDA but train.device = "{t.device}"; use amp = '
                '"bf16" or "none"')
    return None


def _list_needs_files(c: Config) -> str | None:
    d = c.data
    if d.format == "list" and not (d.train_list or d.test_list):
        return ('data.format = "list" needs data.train_list and data.test_list (list files '
                "relative to data.root)")
    return None


def _pretrained_classifier(c: Config) -> str | None:
    m = c.model
    if m.pretrained_classifier and not m.pretrained:
        return ("model.pretrained_classifier = true needs model.pretrained (a datp or mmaction2 "
                "checkpoint whose classifier to take)")
    if m.pretrained_classifier and is_weights_name(m.pretrained):
        return (f'model.pretrained_classifier = true, but model.pretrained = "{m.pretrained}" '
                "names torchvision's ImageNet parameters, whose classifier datp does not take")
    return None


def _no_imagenet_small_cnn(c: Config) -> str | None:
    m = c.model
    if m.backbone == "small_cnn" and is_weights_name(m.pretrained):
        return (f'model.backbone = "small_cnn" has no torchvision parameters, but model.pretrained '
                f'= "{m.pretrained}"; leave model.pretrained empty')
    return None


def _features_have_no_maps(c: Config) -> str | None:
    p = c.pooling
    if c.data.source == "features" and p.aux_input == "conv" and p.kind in ("datp", "attention"):
        return ('pooling.aux_input = "conv" reads a backbone\'s last conv maps, and feature files '
                'hold none (data.source = "features"); use "sequence" (the features) or "scores"')
    return None


def _features_have_one_view(c: Config) -> str | None:
    d = c.data
    if d.source == "features" and d.test_crops != 1:
        return (f'data.source = "features" holds one vector per step, so data.test_crops = '
                f"{d.test_crops} must be 1: crops are cut from frames (the tsn scheme's 10 crops "
                "need frames; p3 is its 25-segment average)")
    return None


def _features_have_no_backbone(c: Config) -> str | None:
    if c.data.source == "features" and c.model.pretrained:
        return (f'model.pretrained = "{c.model.pretrained}" initializes a backbone, and a head on '
                'features has none (data.source = "features"); leave it empty')
    return None


_CROSS_RULES: tuple[tuple[tuple[str, ...], Callable[[Config], str | None]], ...] = (
    (("data.image_size", "data.resize_short"), _crop_fits),
    (("pooling.kind", "pooling.generator", "data.num_segments", "data.test_segments"),
     _discrete_segments),
    (("pooling.kind", "pooling.generator", "pooling.sigma_floor", "pooling.init_sigma"),
     _sigma_floor_below_init),
    (("train.amp", "train.device"), _fp16_needs_cuda),
    (("data.format", "data.train_list", "data.test_list"), _list_needs_files),
    (("model.pretrained_classifier", "model.pretrained"), _pretrained_classifier),
    (("model.backbone", "model.pretrained"), _no_imagenet_small_cnn),
    (("data.source", "pooling.aux_input", "pooling.kind"), _features_have_no_maps),
    (("data.source", "data.test_crops"), _features_have_one_view),
    (("data.source", "model.pretrained"), _features_have_no_backbone),
)


def _warnings(c: Config) -> list[tuple[tuple[str, ...], str]]:
    """Settings that run but probably do not do what was meant: (keys, message)."""
    t = c.train
    found = []
    late = [step for step in t.lr_steps if step >= t.epochs]
    if t.schedule == "step" and late:
        found.append((("train.lr_steps", "train.epochs"),
                      f"train.lr_steps {late} are not before train.epochs = {t.epochs}: the "
                      "learning rate is never divided there"))
    if t.warmup_epochs >= t.epochs:
        found.append((("train.warmup_epochs", "train.epochs"),
                      f"train.warmup_epochs = {t.warmup_epochs} is not below train.epochs = "
                      f"{t.epochs}: the whole run warms up"))
    return found


# --- loading --------------------------------------------------------------------------------------

def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choices(kind: Any) -> OneOf | None:
    """The rule of a field typed with a ``Literal``: one of its values."""
    return OneOf(typing.get_args(kind)) if typing.get_origin(kind) is Literal else None


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is Literal:  # a choice: here the type of its values; the choice is its field's rule
        return _coerce(value, type(typing.get_args(kind)[0]), where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):  # e.g. bool | str: the first that fits
        for option in typing.get_args(kind):
            with contextlib.suppress(ConfigError):
                return _coerce(value, option, where)
        names = " or ".join("true or false" if k is bool else k.__name__
                            for k in typing.get_args(kind))
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def _assign(config: Config, section: str, key: str, value: Any, *, origin: str,
            override: str | None) -> None:
    """Set ``section.key`` from ``origin`` (a file) or from the ``--set`` text ``override``."""
    prefix = f"--set {override}" if override is not None else origin
    sections = _field_types(Config)
    if section not in sections:
        raise ConfigError(f"{prefix}: unknown section [{section}]{_suggest(section, sections)}")
    target = getattr(config, section)
    types_ = _field_types(type(target))
    if key not in types_:
        raise ConfigError(f"{prefix}: unknown key {section}.{key}{_suggest(key, types_)}")
    where = prefix if override is not None else f"{origin}: {section}.{key}"
    setattr(target, key, _coerce(value, types_[key], where))


def from_dict(
    raw: dict[str, Any], *, origin: str = "config", overrides: Sequence[str] = ()
) -> Config:
    """Build a Config from nested ``{section: {key: value}}`` read from ``origin`` (a file name,
    for messages), then apply ``section.key=value`` overrides; validate the result.

    Raises one :class:`ConfigError` listing every unknown name, wrong type and value outside what
    its field accepts, each blamed on the ``--set`` argument that gave it or else on ``origin``.
    """
    config = Config()
    problems: list[str] = []
    sections = _field_types(Config)
    for section, values in raw.items():
        if section not in sections:
            problems.append(f"{origin}: unknown section [{section}]{_suggest(section, sections)}")
        elif not isinstance(values, dict):
            problems.append(f"{origin}: [{section}] must be a table")
        else:
            for key, value in values.items():
                try:
                    _assign(config, section, key, value, origin=origin, override=None)
                except ConfigError as error:
                    problems.append(str(error))
    blame: dict[str, tuple[int, str]] = {}
    for index, text in enumerate(overrides):
        try:
            section, key, value = _parse_override(text)
            _assign(config, section, key, value, origin=origin, override=text)
        except ConfigError as error:
            problems.append(str(error))
            continue
        blame[f"{section}.{key}"] = (index, f"--set {text}")
    if not problems:
        problems = _problems(config, origin=origin, blame=blame)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def section_from_settings(kind: type, settings: dict[str, Any], *, origin: str) -> Any:
    """A config section of type ``kind`` (e.g. ``PoolingConfig``) from keyword settings, checked
    as a file's ``[section]`` is (every unknown name with a suggestion, wrong type and value out of
    range, listed at once in one :class:`ConfigError` blamed on ``origin``)."""
    (name,) = [f.name for f in dataclasses.fields(Config) if f.default_factory is kind]
    return getattr(from_dict({name: settings}, origin=origin), name)


def validate(config: Config, *, origin: str = "config") -> None:
    """Check every field's rule and the rules between fields (for a config changed after it was
    loaded); raises one :class:`ConfigError` naming ``origin`` and listing every problem."""
    problems = _problems(config, origin=origin, blame={})
    if problems:
        raise ConfigError("\n".join(problems))


def _problems(config: Config, *, origin: str, blame: dict[str, tuple[int, str]]) -> list[str]:
    """Every rule broken, each as "<origin or --set ...>: ..."; logs the warnings."""

    def culprit(keys: Sequence[str]) -> str | None:
        blamed = [blame[key] for key in keys if key in blame]
        return max(blamed)[1] if blamed else None

    problems = []
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        kinds = _field_types(type(values))
        for item in dataclasses.fields(values):
            rule = item.metadata.get("rule") or _choices(kinds[item.name])
            value = getattr(values, item.name)
            problem = rule.problem(value) if rule is not None else None
            if problem is not None:
                key = f"{section.name}.{item.name}"
                where = culprit([key]) or f"{origin}: {key} = {_toml_value(value)}"
                problems.append(f"{where}: {problem}")
    if problems:  # the rules between fields assume each field is valid
        return problems
    for keys, rule in _CROSS_RULES:
        message = rule(config)
        if message is not None:
            problems.append(f"{culprit(keys) or origin}: {message}")
    for keys, message in _warnings(config):
        log.warning("%s: %s", culprit(keys) or origin, message)
    return problems


def resumable_settings() -> dict[str, str]:
    """``section.key`` -> why changing it when a run resumes cannot alter what has been learned
    so far: the settings whose field says so (``_field(..., resumable=...)``)."""
    found = {}
    for section in dataclasses.fields(Config):
        for item in dataclasses.fields(section.default_factory()):
            why = item.metadata.get("resumable")
            if why is not None:
                found[f"{section.name}.{item.name}"] = why
    return found


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text}: must look like section.key=value")
    name, value_text = text.split("=", 1)
    if name.count(".") != 1:
        raise ConfigError(f"--set {text}: must name section.key, e.g. train.lr=0.01")
    section, key = name.strip().split(".")
    # TOML value syntax: numbers, true/false, [lists], "quoted strings"; bare words are strings.
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    return section, key, value


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a TOML file (or start from the defaults) and apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return from_dict(raw, origin=origin, overrides=overrides)


def dump_toml(config: Config | dict[str, Any]) -> str:
    """The resolved config (or its nested dicts, :func:`to_dict`) as a TOML file that
    :func:`load_config` reads back unchanged."""
    values = config if isinstance(config, dict) else to_dict(config)
    lines: list[str] = []
    for section, settings in values.items():
        lines.append(f"[{section}]")
        for key, value in settings.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
