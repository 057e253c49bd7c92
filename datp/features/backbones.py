"""Frozen backbones that turn frames, clips or flow stacks into one feature vector each.

K units (frames, or flow stacks), C input channels (3 RGB, 2L flow), H, W image size, h, w input
size of the network, W frames per clip, B images or clips, D feature channels.

A :class:`FrozenBackbone` holds a network in eval mode without gradients, what it reads
(``kind``: ``"image"`` per frame, ``"video"`` per clip of W frames, ``"flow"`` per stack of L
flow fields), its transform (``uint8 [K, C, H, W] -> float32 [K, C, h, w]`` on the units'
device) and its ``settings`` (what made the features: recorded beside them).

Any torchvision classification model gives one (:func:`torchvision_backbone`): its parameters by
weights name (through torch hub's cache, the file's SHA-256 checked, as ``model.pretrained``:
:mod:`datp.models.pretrained`), from a local file of its parameters, or random (for speed
measurements only). The transform is the weights' own (``weights.transforms()``; for a local
file or random parameters, the architecture's default weights'). The features are the inputs of
the last classification layer, which is replaced by ``nn.Identity`` (:func:`remove_classifier`):

- ``fc``: ResNet, ResNeXt, Wide ResNet, RegNet, ShuffleNetV2, GoogLeNet, Inception v3, and the
  video ResNets (r3d_18, mc3_18, r2plus1d_18: 512), after their global pooling;
- ``heads.head``: ViT, whose features are the class token after the encoder's LayerNorm (768
  for B/16);
- ``head``: Swin and Swin V2 (after their final norm and pooling), Swin3D (768);
- the last ``Linear`` of ``classifier``: ConvNeXt, EfficientNet, MobileNet V2 and V3 (V3:
  1280, after its hidden layer), MNASNet, DenseNet, VGG and AlexNet (4096, after fc7), MaxViT;
- the last ``Linear`` of ``head``: MViT (768, its class token);
- the 1x1 convolution of ``classifier``: SqueezeNet (512, pooled after it), S3D (1024, averaged
  over time and space after it).

A trained datp checkpoint's backbone is built by :mod:`datp.engine.features` (it needs the
engine to rebuild the model), with datp's own test transform.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import Tensor, nn

from datp.checkpoint import file_sha256
from datp.choices import is_weights_name
from datp.errors import InputError
from datp.models.pretrained import (
    Download,
    PretrainedError,
    locate,
    read_pretrained,
    torchvision_weights,
)

log = logging.getLogger(__name__)

BackboneKind = Literal["image", "video", "flow"]

WEIGHTS = "--weights"
"""How ``datp features`` names the parameters of a backbone, in messages."""

CLASSIFIER_ATTRIBUTES = ("fc", "heads", "head", "classifier")
"""Where torchvision's classification models keep their classifier (checked for every model of
``torchvision.models`` and ``torchvision.models.video`` by the tests)."""
CLASSIFYING_LAYERS = (nn.Linear, nn.Conv2d, nn.Conv3d)
AUXILIARY_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
"""GoogLeNet's and Inception v3's auxiliary classifiers: in their published files, not used."""

CLIP_LENGTHS = {"r3d_18": 16, "mc3_18": 16, "r2plus1d_18": 16, "s3d": 16, "mvit_v1_b": 16,
                "mvit_v2_s": 16, "swin3d_t": 32, "swin3d_s": 32, "swin3d_b": 32}
"""Default W of the video models: the clip length torchvision's weights were evaluated on (their
docs), except S3D's 128, of which 16 (above its minimum of 14) keeps a step short."""
FIXED_CLIP_LENGTHS = {"mvit_v1_b": 16, "mvit_v2_s": 16}
"""Video models whose positional embeddings fix W."""


@dataclass(frozen=True)
class FrozenBackbone:
    """A network that maps a batch of units to features ``[B, D]``, and how to prepare them."""

    module: nn.Module
    """``[B, C, h, w]`` (image, flow) or ``[B, C, W, h, w]`` (video) -> ``[B, D]``."""
    kind: BackboneKind
    channels: int
    """D."""
    transform: Callable[[Tensor], Tensor]
    """uint8 ``[K, C, H, W]`` -> float32 ``[K, C, h, w]``, on the input's device."""
    settings: dict
    """``{"backbone": ..., "transform": ...}``: how the features are made."""
    clip_length: int | None = None
    """The window W the network reads at once: a video model's default clip, a flow model's
    stack length L (fixed); None for image models."""

    def to(self, device: torch.device | str) -> FrozenBackbone:
        self.module.to(device)
        return self


def freeze(module: nn.Module) -> nn.Module:
    """``module`` in eval mode (BatchNorm statistics and dropout fixed) without gradients."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def remove_classifier(model: nn.Module) -> tuple[int, str, str]:
    """Replace the last classification layer of a torchvision classification model by
    ``nn.Identity``; returns (D, the removed layer's parameter prefix, a description)."""
    for attribute in CLASSIFIER_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Module):
            break
    else:
        raise InputError(f"{type(model).__name__} has none of {CLASSIFIER_ATTRIBUTES}: not a "
                         "torchvision classification model")
    if isinstance(head, CLASSIFYING_LAYERS):
        layer, prefix = head, attribute
        setattr(model, attribute, nn.Identity())
    else:
        names = [name for name, child in head.named_children()
                 if isinstance(child, CLASSIFYING_LAYERS)]
        if not names:
            raise InputError(f"{type(model).__name__}.{attribute} holds no Linear or "
                             "convolution to remove")
        layer, prefix = getattr(head, names[-1]), f"{attribute}.{names[-1]}"
        setattr(head, names[-1], nn.Identity())
    channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    outputs = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return channels, prefix, (f"{prefix} ({type(layer).__name__} {channels} -> {outputs}) "
                              "replaced by Identity")


def model_kind(name: str) -> BackboneKind:
    """``"video"`` for torchvision's video classification models, ``"image"`` for its image
    classification models; anything else is an ``InputError`` suggesting a close name."""
    video = torchvision.models.list_models(module=torchvision.models.video)
    image = torchvision.models.list_models(module=torchvision.models)
    if name in video:
        return "video"
    if name in image:
        return "image"
    close = difflib.get_close_matches(name, [*image, *video], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"--backbone {name}: not a torchvision image or video classification "
                     f"model{hint}")


def preset_settings(preset: nn.Module) -> dict:
    """What a torchvision transform preset does, for the record."""
    return {
        "preset": type(preset).__name__,
        "resize": list(preset.resize_size),
        "crop": list(preset.crop_size),
        "mean": [float(v) for v in preset.mean],
        "std": [float(v) for v in preset.std],
        "interpolation": preset.interpolation.value,
        # VideoClassification resizes without antialiasing (its forward says so).
        "antialias": bool(getattr(preset, "antialias", False)),
    }


class PresetTransform:
    """A weights' preset on units ``[K, C, H, W]``: the image preset as it is, the video preset
    (which returns ``[C, K, h, w]``) transposed back; each frame is transformed alone either way,
    so the frames of overlapping clips are transformed once."""

    def __init__(self, preset: nn.Module, *, video: bool) -> None:
        self.preset = preset
        self.video = video

    def __call__(self, units: Tensor) -> Tensor:
        out = self.preset(units)
        return out.transpose(0, 1) if self.video else out  # [K, C, h, w]


def _load_local(model: nn.Module, path: Path, *, name: str, removed: str) -> None:
    """Load a local file of ``name``'s parameters (a torchvision state dict) into ``model``,
    whose classifier ``removed`` is already gone."""
    pretrained = read_pretrained(path, setting=WEIGHTS)
    own = model.state_dict()
    unused = [k for k in pretrained.state if k not in own
              and not k.startswith((f"{removed}.", *AUXILIARY_PREFIXES))]
    missing = [k for k in own if k not in pretrained.state]
    if pretrained.kind != "torchvision" or unused or missing:
        hint = ("; the backbone of a datp checkpoint is read with --checkpoint"
                if pretrained.kind == "datp" else "")
        details = ", ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"not of {name}: {', '.join(unused[:3])}" if unused else "",
        ]))
        raise PretrainedError(f"{path}: not the parameters of torchvision's {name} "
                              f"({details or pretrained.kind + ' checkpoint'}){hint}")
    try:
        model.load_state_dict({k: pretrained.state[k] for k in own})
    except RuntimeError as error:
        detail = "; ".join(line.strip() for line in str(error).splitlines()[1:3])
        raise PretrainedError(f"{path}: its parameters do not fit {name}: {detail}") from error


def torchvision_backbone(
    name: str, *, weights: str | None = None, download: Download | None = None
) -> FrozenBackbone:
    """torchvision's classification model ``name`` without its classifier, frozen.

    ``weights``: a torchvision weights name (``ViT_B_16_Weights.IMAGENET1K_V1``, or
    ``"imagenet"`` for the default ones) read from torch hub's cache (downloaded there once with
    ``download``), a local file of the model's parameters, or None for random parameters.
    """
    kind = model_kind(name)
    if weights is not None and is_weights_name(weights):
        enum = torchvision_weights(weights, name, setting=WEIGHTS)
        path = locate(weights, backbone=name, download=download,
                      setting=WEIGHTS)  # cached, hash checked
        model = torchvision.models.get_model(name, weights=enum)  # reads the cached file
        preset_weights, record = enum, {"weights": str(enum)}
    else:
        model = torchvision.models.get_model(name, weights=None)
        path = None if weights is None else locate(Path(weights), backbone=name,
                                                   setting=WEIGHTS)
        preset_weights = torchvision.models.get_model_weights(name).DEFAULT
        record = {"weights": None if path is None else path.name}
        if path is None:
            log.warning("--backbone %s without --weights: random parameters, features for "
                        "speed measurements only", name)
    channels, removed, description = remove_classifier(model)
    if path is not None and not is_weights_name(weights or ""):
        _load_local(model, path, name=name, removed=removed)
    record.update({
        "name": name,
        "kind": kind,
        "weights_file": None if path is None else path.name,
        "weights_sha256": None if path is None else file_sha256(path),
        "classifier": description,
        "channels": channels,
    })
    preset = preset_weights.transforms()
    transform = {**preset_settings(preset)}
    if path is None or not is_weights_name(weights or ""):
        transform["of"] = str(preset_weights)  # whose preset a file or random parameters use
    return FrozenBackbone(
        module=freeze(model), kind=kind, channels=channels,
        transform=PresetTransform(preset, video=kind == "video"),
        settings={"backbone": record, "transform": transform},
        clip_length=CLIP_LENGTHS.get(name, 16) if kind == "video" else None,
    )
