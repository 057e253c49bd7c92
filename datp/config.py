"""Typed run configuration: dataclasses loaded from flat TOML files, with ``--set a.b=v`` overrides.

Strict: an unknown section or key is an error that suggests the closest valid name; a value of the
wrong type is an error naming the key. The resolved config is saved in the run folder and inside
every checkpoint (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datp.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or override that does not match the schema."""


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    """Dataset root: videos (or frame folders) and the annotation files."""
    format: str = "ucf101"
    """ucf101 | hmdb51 | kinetics | list | folders (see datp.data.splits)."""
    split: int = 1
    """Official split number (UCF101 and HMDB51: 1, 2, 3)."""
    annotations: str = ""
    """Annotation folder or file, relative to root; empty: the format's usual place."""
    train_list: str = ""
    """List file for format "list" (``path [num_frames] label``)."""
    test_list: str = ""
    source: str = "video"
    """video (decode files) | frames (img_%05d.jpg folders)."""
    decoder: str = "pyav"
    """Video decoder for source "video": pyav (default, bundles FFmpeg) | torchcodec (optional;
    needs pip install torchcodec and FFmpeg's shared libraries). Both seek frame-exactly."""
    flow_root: str = ""
    """Where extracted flow lives, for modality "flow"; empty: root/flow."""
    modality: str = "rgb"
    """rgb | flow."""
    num_segments: int = 10
    """N in training (the paper: 10 for training and testing)."""
    test_segments: int = 10
    """N at test time (TSN tests 25; DATP with a mixture runs at any N)."""
    flow_length: int = 5
    """L, flow fields stacked per segment (TSN: 5, i.e. 10 channels)."""
    image_size: int = 224
    """Side of the square network input."""
    resize_short: int = 256
    """Short side frames are resized to before cropping (TSN: 256 from 340 x 256 frames)."""
    test_crops: int = 1
    """1 (centre), 3 or 10 (TSN's ten-crop)."""
    flip: bool = True
    """Random horizontal flips in training (negating x flow). Turn off where left and right
    carry the label, as in the synthetic benchmark, whose classes move left or right."""
    normalize_on_device: bool = False
    """Leave clips uint8 in the loader and normalize each batch on the model's device: a quarter
    of the bytes to copy to a GPU and no float work in the loader workers."""
    workers: int = 2
    skip_bad_videos: bool = False
    """Skip unreadable videos in training (each skip is logged) instead of stopping."""


@dataclass
class ModelConfig:
    backbone: str = "resnet34"
    pretrained: str = ""
    """Local file with ImageNet parameters (a torchvision state dict) or a datp checkpoint."""
    dropout: float = 0.5
    partial_bn: bool = True
    """TSN's partial BN: freeze every BatchNorm but the first after the first epoch."""


@dataclass
class PoolingConfig:
    kind: str = "datp"
    """datp | average | max | attention | random_gaussians."""
    pool: str = "probabilities"
    """What Eq. (3) pools: probabilities (the paper) or logits (TSN)."""
    aux_input: str = "conv"
    """What the auxiliary net reads: scores (softmax scores) or conv (last conv maps)."""
    generator: str = "mog"
    """mog | discrete."""
    discrete_activation: str = "identity"
    """Discrete weights: identity (the paper: w = theta, may turn negative) | softplus
    (non-negative; see docs/RESULTS.md, Table 3)."""
    num_gaussians: int = 2
    init_sigma: float = 0.2
    sigma_floor: float = 0.05
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])
    fc_channels: list[int] = field(default_factory=lambda: [128])
    reduce_channels: int = 64
    normalize_aux_input: bool = True
    """Normalize each video's feature sequence (mean and RMS over N and D) before the temporal
    convolutions (not in Table 2; see docs/DESIGN.md)."""


@dataclass
class TrainConfig:
    epochs: int = 30
    optimizer: str = "sgd"
    """sgd (TSN, for ImageNet-initialized backbones) | adamw (faster from scratch)."""
    batch_size: int = 8
    lr: float = 0.001
    momentum: float = 0.9
    pooling_lr_factor: float = 1.0
    """Learning rate of the pooling module's parameters (DATP's auxiliary net) relative to lr."""
    weight_decay: float = 5e-4
    schedule: str = "step"
    """step | cosine."""
    lr_steps: list[int] = field(default_factory=lambda: [20, 25])
    """Epochs at which the step schedule divides the learning rate by 10."""
    warmup_epochs: int = 0
    clip_grad: float = 40.0
    """Max gradient norm (TSN: 40 RGB, 20 flow); 0 disables clipping."""
    amp: str = "none"
    """none | bf16 | fp16 (CUDA only)."""
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    eval_every: int = 1
    """Evaluate on the test split every this many epochs (0: only at the end)."""
    max_steps_per_epoch: int = 0
    """Stop an epoch after this many steps (0: the whole epoch). For smoke tests."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unions are not supported in the config schema")
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


def from_dict(raw: dict[str, Any], *, origin: str = "config") -> Config:
    """Build a Config from nested ``{section: {key: value}}``, refusing unknown names."""
    sections = _field_types(Config)
    config = Config()
    for section, values in raw.items():
        if section not in sections:
            raise ConfigError(f"{origin}: unknown section [{section}]{_suggest(section, sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        target = getattr(config, section)
        types_ = _field_types(type(target))
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(f"{origin}: unknown key {section}.{key}{_suggest(key, types_)}")
            setattr(target, key, _coerce(value, types_[key], f"{origin}: {section}.{key}"))
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    name, value_text = text.split("=", 1)
    if name.count(".") != 1:
        raise ConfigError(f"override {text!r} must name section.key")
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
    apply_overrides(raw, overrides, origin=origin)
    return from_dict(raw, origin=origin)


def apply_overrides(
    raw: dict[str, Any], overrides: typing.Sequence[str], *, origin: str = "config"
) -> dict[str, Any]:
    """Set ``section.key=value`` overrides in a nested dict (in place; returned for chaining)."""
    for text in overrides:
        section, key, value = _parse_override(text)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        raw[section][key] = value
    return raw


def dump_toml(config: Config) -> str:
    """The resolved config as a TOML file that :func:`load_config` reads back unchanged."""
    lines: list[str] = []
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
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
