"""Per-segment backbones from torchvision, built without downloading anything.

Dimension key: B' images (videos x segments), D_in input channels (3 RGB, 2L flow), D feature
channels, H, W image size, h, w feature-map size.

Pretrained parameters come from a local file: a torchvision state dict (``.pth``) or a datp
checkpoint. A flow backbone (``in_channels = 2L``) built from RGB parameters gets TSN's
cross-modality initialization: the first convolution's filters are averaged over colour and
repeated over the 2L channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

log = logging.getLogger(__name__)


def _resnet(name: str) -> Callable[[], tuple[nn.Module, nn.Module, str, str]]:
    def build():
        model = getattr(torchvision.models, name)(weights=None)
        trunk = nn.Sequential(
            model.conv1,
            model.bn1,
            model.relu,
            model.maxpool,
            model.layer1,
            model.layer2,
            model.layer3,
            model.layer4,
        )
        return model, trunk, "conv1", "fc."

    return build


def _features(name: str) -> Callable[[], tuple[nn.Module, nn.Module, str, str]]:
    def build():
        model = getattr(torchvision.models, name)(weights=None)
        return model, model.features, "features.0.0", "classifier."

    return build


def _small_cnn() -> tuple[nn.Module, nn.Module, str, str]:
    """Four conv-BN-ReLU layers of stride 2 (32, 64, 128, 256 channels): a backbone that trains
    from scratch in CPU minutes (about 1 ms per 64 px image for forward and backward on 2 cores,
    a tenth of resnet18), for the synthetic benchmark and quick experiments. It has no ImageNet
    parameters; it is not the paper's backbone."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (32, 64, 128, 256):
        layers += [
            nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        channels = width
    trunk = nn.Sequential(*layers)
    return trunk, trunk, "0", "classifier."


# name -> builder of (torchvision model, its convolutional trunk, first-conv attribute path,
# classifier key prefix). A literal table, not a registry.
BACKBONES: dict[str, Callable[[], tuple[nn.Module, nn.Module, str, str]]] = {
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "resnet101": _resnet("resnet101"),
    "mobilenet_v3_small": _features("mobilenet_v3_small"),
    "mobilenet_v3_large": _features("mobilenet_v3_large"),
    "efficientnet_b0": _features("efficientnet_b0"),
    "small_cnn": _small_cnn,
}


class PretrainedError(ValueError):
    """A pretrained-parameter file that is missing or does not fit the backbone."""


class Backbone(nn.Module):
    """A convolutional trunk: ``[B', D_in, H, W] -> [B', D, h, w]``."""

    def __init__(
        self, *, name: str, trunk: nn.Module, feature_channels: int, in_channels: int
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.feature_channels = feature_channels
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x)


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _get(module, parent_path) if parent_path else module
    if last.isdigit():
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


def _read_pretrained(path: Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(
            f"pretrained parameters {path} do not exist; datp never downloads weights: give the "
            "path of a torchvision state dict (e.g. resnet34-b627a593.pth) or a datp checkpoint, "
            "or leave model.pretrained empty to train from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PretrainedError(f"{path} cannot be read as a state dict: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        # A datp checkpoint: keep its backbone's parameters under torchvision's names is not
        # possible in general, so it is loaded into the trunk directly (see build_backbone).
        return {"__datp__": torch.tensor(1), **state["model"]}
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedError(f"{path} is not a state dict of tensors")
    return state


def _mismatches(expected: dict[str, Tensor], given: dict[str, Tensor]) -> list[str]:
    problems = [f"missing {k}" for k in expected if k not in given]
    problems += [f"unexpected {k}" for k in given if k not in expected]
    problems += [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(given[k].shape)}"
        for k in expected
        if k in given and expected[k].shape != given[k].shape
    ]
    return problems


def cross_modality_weight(rgb_weight: Tensor, in_channels: int) -> Tensor:
    """TSN's cross-modality initialization: ``[O, 3, k, k] -> [O, in_channels, k, k]``, the
    colour mean of each filter repeated over the new input channels."""
    return rgb_weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def build_backbone(
    name: str, *, in_channels: int = 3, pretrained: str | Path | None = None
) -> Backbone:
    """Build backbone ``name`` (a key of ``BACKBONES``) for ``in_channels`` input channels.

    ``pretrained``: a torchvision state dict of the same architecture (its classifier is ignored)
    or a datp checkpoint whose model has this backbone. RGB parameters given to a backbone with
    another number of input channels are adapted by :func:`cross_modality_weight`.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    model, trunk, first_conv_path, classifier_prefix = BACKBONES[name]()
    if pretrained:
        state = _read_pretrained(Path(pretrained))
        if "__datp__" in state:
            trunk_state = {
                k.removeprefix("backbone.trunk."): v
                for k, v in state.items()
                if k.startswith("backbone.trunk.")
            }
            if not trunk_state:
                raise PretrainedError(f"{pretrained} is a datp checkpoint without a backbone")
            rgb_like = _get(trunk, _trunk_path(first_conv_path, name)).weight
            first_key = _trunk_path(first_conv_path, name) + ".weight"
            if first_key in trunk_state and trunk_state[first_key].shape[1] != rgb_like.shape[1]:
                trunk_state[first_key] = cross_modality_weight(
                    trunk_state[first_key], rgb_like.shape[1]
                )
            problems = _mismatches(trunk.state_dict(), trunk_state)
            if problems:
                raise PretrainedError(
                    f"{pretrained} does not fit backbone {name}: " + "; ".join(problems[:5])
                )
            trunk.load_state_dict(trunk_state)
        else:
            wanted = {
                k: v for k, v in model.state_dict().items() if not k.startswith(classifier_prefix)
            }
            given = {k: v for k, v in state.items() if not k.startswith(classifier_prefix)}
            problems = _mismatches(wanted, given)
            if problems:
                raise PretrainedError(
                    f"{pretrained} does not fit torchvision's {name}: "
                    + "; ".join(problems[:5])
                    + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                )
            model.load_state_dict(given, strict=False)
    first = _get(model, first_conv_path)
    if in_channels != first.in_channels:
        replacement = nn.Conv2d(
            in_channels,
            first.out_channels,
            kernel_size=first.kernel_size,
            stride=first.stride,
            padding=first.padding,
            bias=first.bias is not None,
        )
        with torch.no_grad():
            replacement.weight.copy_(cross_modality_weight(first.weight, in_channels))
            if first.bias is not None:
                replacement.bias.copy_(first.bias)
        _set(model, first_conv_path, replacement)
        if name.startswith("resnet"):  # the trunk holds the module itself, not a path
            trunk[0] = replacement
    with torch.no_grad():
        channels = trunk(torch.zeros(1, in_channels, 64, 64)).shape[1]
    return Backbone(name=name, trunk=trunk, feature_channels=channels, in_channels=in_channels)


def _trunk_path(first_conv_path: str, name: str) -> str:
    """Where the first convolution sits inside the trunk."""
    if name.startswith("resnet") or name == "small_cnn":
        return "0"
    return first_conv_path.removeprefix("features.")
