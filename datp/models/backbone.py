"""Per-segment backbones from torchvision.

Dimension key: B' images (videos x segments), D_in input channels (3 RGB, 2L flow), D feature
channels, H, W image size, h, w feature-map size.

Pretrained parameters come from :mod:`datp.models.pretrained`: torchvision's by name (through
torch hub's cache), or a local torchvision state dict, datp checkpoint or mmaction2 TSN
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

from datp.models.pretrained import (
    Pretrained,
    PretrainedError,
    load_pretrained,
    mmaction2_name,
)

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
        return model, trunk, "0", "fc."

    return build


def _features(name: str) -> Callable[[], tuple[nn.Module, nn.Module, str, str]]:
    def build():
        model = getattr(torchvision.models, name)(weights=None)
        return model, model.features, "0.0", "classifier."

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


# name -> builder of (torchvision model, its convolutional trunk sharing the model's modules, path
# of the first convolution inside the trunk, classifier key prefix). A literal table, no registry.
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


class Backbone(nn.Module):
    """A convolutional trunk: ``[B', D_in, H, W] -> [B', D, h, w]``.

    ``feature_channels`` is D, ``in_channels`` is D_in; :meth:`forward_pooled` gives the
    globally average-pooled vector ``[B', D]``.
    """

    def __init__(
        self, *, name: str, trunk: nn.Module, feature_channels: int, in_channels: int
    ) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.feature_channels = feature_channels
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B', D_in, H, W]`` -> conv maps ``[B', D, h, w]``."""
        return self.trunk(x)

    def forward_pooled(self, x: Tensor) -> Tensor:
        """x ``[B', D_in, H, W]`` -> globally average-pooled features ``[B', D]``."""
        return self.trunk(x).mean(dim=(-2, -1))

    def feature_size(self, image_size: int) -> int:
        """h (= w) of the conv maps for a square input of side ``image_size``. Runs one probe
        image in eval mode, so no BatchNorm statistic moves, and restores the mode."""
        was_training = self.training
        parameter = next(self.parameters())
        probe = torch.zeros(1, self.in_channels, image_size, image_size, device=parameter.device)
        try:
            with torch.no_grad():
                return int(self.eval()(probe.to(parameter.dtype)).shape[-1])
        finally:
            self.train(was_training)


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``module``, in the order they are applied (definition order)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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


def _check_fits(
    pretrained: Pretrained, what: str, expected: dict[str, Tensor], given: dict[str, Tensor]
) -> None:
    """Raise naming the file's keys that do not fit, the first key of the file first; a missing
    BatchNorm ``num_batches_tracked`` (files saved before torch 0.4.1 lack it) is no problem."""

    def name(key: str) -> str:
        if key in pretrained.names:
            return pretrained.names[key]
        return mmaction2_name(key) if pretrained.kind == "mmaction2" else key

    problems = []
    for key, value in given.items():
        if key not in expected:
            problems.append(f"unexpected {name(key)}")
        elif expected[key].shape != value.shape:
            problems.append(
                f"{name(key)}: expected {tuple(expected[key].shape)}, got {tuple(value.shape)}"
            )
    problems += [
        f"missing {name(k)}"
        for k in expected
        if k not in given and not k.endswith("num_batches_tracked")
    ]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PretrainedError(
            f"{pretrained.path} does not fit {what}: " + "; ".join(problems[:5]) + more
        )


def cross_modality_weight(rgb_weight: Tensor, in_channels: int) -> Tensor:
    """TSN's cross-modality initialization: ``[O, 3, k, k] -> [O, in_channels, k, k]``, the
    colour mean of each filter repeated over the new input channels."""
    return rgb_weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def _load(
    pretrained: Pretrained,
    *,
    name: str,
    model: nn.Module,
    trunk: nn.Module,
    first: nn.Conv2d,
    first_conv_path: str,
    classifier_prefix: str,
    in_channels: int,
) -> Tensor | None:
    """Load ``pretrained`` into the trunk (a datp checkpoint: the trunk's own names) or the
    torchvision model around it (torchvision and mmaction2 files: torchvision's names, the
    classifier left out). Returns a first-conv weight for exactly ``in_channels`` channels when
    the file has one for another modality than RGB (it replaces the first conv later)."""
    if pretrained.kind == "datp":
        target, what = trunk, f"backbone {name}"
        given = {
            k.removeprefix("backbone.trunk."): v
            for k, v in pretrained.state.items()
            if k.startswith("backbone.trunk.")
        }
        if not given:
            raise PretrainedError(f"{pretrained.path} is a datp checkpoint without a backbone")
        first_key = first_conv_path + ".weight"
        expected = trunk.state_dict()
    else:
        target, what = model, f"torchvision's {name}"
        given = {k: v for k, v in pretrained.state.items() if not k.startswith(classifier_prefix)}
        first_key = next(n for n, m in model.named_modules() if m is first) + ".weight"
        expected = {
            k: v for k, v in model.state_dict().items() if not k.startswith(classifier_prefix)
        }
    checkpoint_first = None
    given_first = given.get(first_key)
    if given_first is not None and given_first.dim() == 4:
        if given_first.shape[1] == in_channels and in_channels != first.in_channels:
            checkpoint_first = given.pop(first_key)  # e.g. a flow stream's own conv1
            given[first_key] = first.weight.detach().clone()
        elif given_first.shape[1] != first.in_channels:
            raise PretrainedError(
                f"{pretrained.path}: its first convolution takes {given_first.shape[1]} "
                f"input channels; only RGB (3) parameters or parameters for exactly "
                f"{in_channels} channels can initialize this backbone"
            )
    _check_fits(pretrained, what, expected, given)
    target.load_state_dict(given, strict=False)
    return checkpoint_first


def _last_conv_channels(trunk: nn.Module) -> int:
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def build_backbone(
    name: str, *, in_channels: int = 3, pretrained: str | Path | Pretrained | None = None
) -> Backbone:
    """Build backbone ``name`` (a key of ``BACKBONES``) for ``in_channels`` input channels.

    ``pretrained``: what ``model.pretrained`` names (see :mod:`datp.models.pretrained`: "imagenet",
    a torchvision weights name, a local torchvision state dict, datp checkpoint or mmaction2
    recognizer checkpoint), or parameters already read. A classifier in it is ignored here. RGB
    parameters given to a backbone with another number of input channels are adapted by
    :func:`cross_modality_weight`; parameters for exactly ``in_channels`` are taken as they are.
    Without ``pretrained`` the parameters are torchvision's random initialization.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    model, trunk, first_conv_path, classifier_prefix = BACKBONES[name]()
    first = _get(trunk, first_conv_path)
    checkpoint_first: Tensor | None = None  # a first-conv weight already for in_channels
    if pretrained:
        if not isinstance(pretrained, Pretrained):
            pretrained = load_pretrained(pretrained, backbone=name)
        checkpoint_first = _load(
            pretrained, name=name, model=model, trunk=trunk, first=first,
            first_conv_path=first_conv_path, classifier_prefix=classifier_prefix,
            in_channels=in_channels,
        )
    if in_channels != first.in_channels:
        replacement = nn.Conv2d(
            in_channels,
            first.out_channels,
            kernel_size=first.kernel_size,
            stride=first.stride,
            padding=first.padding,
            dilation=first.dilation,
            groups=first.groups,
            bias=first.bias is not None,
        )
        with torch.no_grad():
            if checkpoint_first is not None:
                replacement.weight.copy_(checkpoint_first)
            else:
                replacement.weight.copy_(cross_modality_weight(first.weight, in_channels))
            if first.bias is not None:
                replacement.bias.copy_(first.bias)
        _set(trunk, first_conv_path, replacement)
        if pretrained and checkpoint_first is None:
            log.info(
                "%s: first convolution initialized across modalities for %d channels",
                name,
                in_channels,
            )
    return Backbone(
        name=name,
        trunk=trunk,
        feature_channels=_last_conv_channels(trunk),
        in_channels=in_channels,
    )
