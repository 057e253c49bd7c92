"""Where pretrained parameters come from, and how a file of them is read.

``model.pretrained`` is one of:

- ``"imagenet"``: the backbone's default ImageNet parameters from torchvision;
- a torchvision weights name, e.g. ``"ResNet34_Weights.IMAGENET1K_V1"``;
- a local file: a torchvision state dict, a datp checkpoint, or an mmaction2 recognizer
  checkpoint (a TSN with a ResNet backbone).

A name goes through torchvision's weights API to its URL and to torch hub's cache,
``torch.hub.get_dir()/checkpoints/<file name of the URL>`` (``$TORCH_HOME/hub/checkpoints``). The
file is downloaded once, when it is not cached, and read from the cache afterwards, offline too.
torchvision names its files after their SHA-256 (``resnet34-b627a593.pth``: the digest begins
``b627a593``); the cached file is checked against its name every time it is used. Offline and not
cached is one line naming the exact path to put the file at and the URL it comes from.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from datp.checkpoint import describe_load_error, file_sha256
from datp.choices import IMAGENET, is_weights_name
from datp.errors import UserError
from datp.run_state import model_parameters

log = logging.getLogger(__name__)

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: <name>-<sha256 prefix>.pth
# A local file named as published: torchvision's ``<name>-<8 hex digits>.pth`` and mmaction2's model
# zoo ``<name>_<date>-<8 hex digits>.pth`` (tools/deployment/publish_model.py). Eight decimal digits
# alone are read as a date or a counter a user chose (``tsn-20240315.pth``), not as a hash.
_HASH_IN_LOCAL_NAME = re.compile(r"(?:_\d{8}-([a-f0-9]{8})|-((?=[0-9]*[a-f])[a-f0-9]{8}))\.pth?$")

# Prefixes that wrappers add to parameter names: DistributedDataParallel, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

Download = Callable[..., None]
"""``download(url, destination, hash_prefix=..., progress=...)``, as torch.hub's
``download_url_to_file``: writes the file atomically and raises if its SHA-256 does not begin with
``hash_prefix``; raises ``OSError`` (``URLError``) when the network cannot be reached."""


class PretrainedError(UserError, ValueError):
    """Pretrained parameters that cannot be found, fetched, or fitted to the backbone."""


class Pretrained(NamedTuple):
    """Parameters read from a file, named the way the backbone builder expects."""

    path: Path
    kind: str
    """"torchvision", "datp" or "mmaction2"."""
    state: dict[str, Tensor]
    """torchvision and mmaction2: a torchvision model's names (``conv1.weight``,
    ``layer1.0.bn1.bias``); datp: the TSN's names (``backbone.trunk.0.weight``, ``fc.weight``)."""
    classifier: dict[str, Tensor]
    """The classifier's ``weight`` ``[C, D]`` and ``bias`` ``[C]`` where the file has one that
    datp can take (a datp or mmaction2 recognizer), else empty."""
    names: dict[str, str]
    """A key of ``state`` -> its name in the file, where they differ (for messages)."""


# --- by name --------------------------------------------------------------------------------------

def cache_path(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


SETTING = "model.pretrained"
"""The setting that names pretrained parameters, as messages call it (``datp features`` passes
its ``--weights``)."""


def _without(setting: str) -> str:
    """What leaving ``setting`` empty does."""
    return "to train it from scratch" if setting == SETTING else "for random parameters"


def _given(setting: str, spec: str) -> str:
    """How the user gave ``spec``: ``model.pretrained = "x"``, or an option ``--weights x``."""
    return f'{setting} = "{spec}"' if setting == SETTING else f"{setting} {spec}"


def _architecture(setting: str, backbone: str) -> str:
    return f"model.backbone = {backbone}" if setting == SETTING else backbone


def torchvision_weights(spec: str, backbone: str, *, setting: str = SETTING):
    """torchvision's weights enum member that ``spec`` names for ``backbone``; errors name
    ``setting``."""
    try:
        available = torchvision.models.get_model_weights(backbone)
    except (ValueError, KeyError):
        raise PretrainedError(
            f'{_given(setting, spec)}: torchvision has no pretrained parameters for backbone '
            f"{backbone}; leave {setting} empty {_without(setting)}"
        ) from None
    if spec == IMAGENET:
        return available.DEFAULT
    try:
        weights = torchvision.models.get_weight(spec)
    except (ValueError, KeyError, AttributeError):
        names = ", ".join(f"{available.__name__}.{w.name}" for w in available)
        raise PretrainedError(
            f'{_given(setting, spec)}: torchvision has no weights of that name; backbone '
            f"{backbone} has {names} (or \"{IMAGENET}\")"
        ) from None
    if type(weights) is not available:
        raise PretrainedError(
            f'{_given(setting, spec)}: these are parameters of another architecture than '
            f"{_architecture(setting, backbone)}; its weights are {available.__name__}.*"
        )
    return weights


def _hash_prefix(path: Path) -> str | None:
    found = _HASH_IN_NAME.search(path.name)
    return found.group(1) if found else None


def check_hash(path: Path, *, expected: str | None, source: str, remedy: str) -> None:
    """Raise :class:`PretrainedError` if the SHA-256 of ``path`` does not begin with the hex
    digits ``expected``, taken from its name (``<name>-<digits>.pth``); ``source`` says where the
    file comes from, ``remedy`` what to do about it."""
    if not expected:
        return
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise PretrainedError(
            f"{path}: its SHA-256 begins {actual[:len(expected)]}, but its name says {expected}: "
            f"the file is damaged or not the one from {source}; {remedy}"
        )


def locate(spec: str | Path, *, backbone: str, download: Download | None = None,
           setting: str = SETTING) -> Path:
    """The local file ``model.pretrained`` (or ``setting``) names: a path as it is (hash checked
    where its name carries one, as torchvision's and mmaction2's published files do), or
    torchvision's weights by name, from torch hub's cache (hash checked) or downloaded into it
    with ``download`` (default ``torch.hub.download_url_to_file``)."""
    if isinstance(spec, Path) or not is_weights_name(spec):
        path = Path(spec)
        found = _HASH_IN_LOCAL_NAME.search(path.name)
        if found and path.is_file():
            check_hash(path, expected=found.group(1) or found.group(2),
                       source="where it was published",
                       remedy="put the published file there, or rename a file of your own")
        return path
    weights = torchvision_weights(spec, backbone, setting=setting)
    path = cache_path(weights.url)
    if path.is_file():
        check_hash(path, expected=_hash_prefix(path), source=weights.url,
                   remedy="delete it (datp downloads it again when online) or put the right file "
                   "there")
        return path
    download = download or torch.hub.download_url_to_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PretrainedError(
            f"cannot create torch hub's cache folder {path.parent} ({error.strerror or error}); "
            "set TORCH_HOME to a writable folder"
        ) from error
    log.info("downloading %s from %s to %s", weights, weights.url, path)
    try:
        download(weights.url, str(path), hash_prefix=_hash_prefix(path), progress=True)
    except OSError as error:  # URLError, HTTPError, timeouts: offline or unreachable
        reason = getattr(error, "reason", None) or error.strerror or error
        raise PretrainedError(
            f'{_given(setting, spec)}: {weights} is not in the cache and cannot be '
            f"downloaded ({reason}); put the file from {weights.url} at {path} (TORCH_HOME "
            "moves the cache), or give the path of a local file"
        ) from error
    except RuntimeError as error:  # torch.hub: "invalid hash value (expected ..., got ...)"
        raise PretrainedError(
            f"{weights.url} was downloaded but is not the file its name says ({error}); "
            f"nothing was kept: try again, or put the right file at {path}"
        ) from error
    return path


# --- reading a file -------------------------------------------------------------------------------

def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key.removeprefix(prefix), True
    return key


# mmaction2's ResNet names, checked in its own source (open-mmlab/mmaction2, read with the search
# tool): mmaction/models/backbones/resnet.py wraps every conv and its BatchNorm in an mmcv
# ConvModule (stem ``conv1``, blocks ``layerX.Y.convN``, shortcut ``layerX.Y.downsample``), and
# its ``_load_torchvision_checkpoint`` maps them to torchvision's names exactly as below
# (``convN.conv`` -> ``convN``, ``convN.bn`` -> ``bnN``, ``downsample.conv/bn`` ->
# ``downsample.0/1``); mmcv/cnn/bricks/conv_module.py names the parts ``conv`` and, through
# build_norm_layer's abbreviation for BatchNorm, ``bn``. The recognizer holds ``backbone`` and
# ``cls_head``; heads/tsn_head.py's classifier is ``fc_cls = nn.Linear(in_channels,
# num_classes)``. A checkpoint is ``{"meta": ..., "state_dict": ..., ...}`` (mmcv/mmengine
# save_checkpoint). Its input normalization (mean 123.675, 116.28, 103.53 and std 58.395, 57.12,
# 57.375 on 0..255) is torchvision's ImageNet normalization on 0..1, datp's own.
_MMACTION2_NAMES = (  # (mmaction2's name, torchvision's name), without "backbone."
    ("conv1.conv.{p}", "conv1.{p}"),
    ("conv1.bn.{p}", "bn1.{p}"),
    ("{block}.conv{n}.conv.{p}", "{block}.conv{n}.{p}"),
    ("{block}.conv{n}.bn.{p}", "{block}.bn{n}.{p}"),
    ("{block}.downsample.conv.{p}", "{block}.downsample.0.{p}"),
    ("{block}.downsample.bn.{p}", "{block}.downsample.1.{p}"),
)
_PARTS = {"block": r"layer\d+\.\d+", "n": r"\d", "p": r"\w+"}


def _rename(key: str, *, to_torchvision: bool) -> str:
    """``key`` in the other naming of ``_MMACTION2_NAMES``; unchanged where no form fits."""
    for mmaction2, torchvision_form in _MMACTION2_NAMES:
        source, target = (mmaction2, torchvision_form) if to_torchvision else (
            torchvision_form, mmaction2)
        pattern = re.escape(source).replace(r"\{", "{").replace(r"\}", "}")
        pattern = pattern.format(**{k: f"(?P<{k}>{v})" for k, v in _PARTS.items()})
        found = re.fullmatch(pattern, key)
        if found:
            return target.format(**found.groupdict())
    return key


def mmaction2_name(torchvision_key: str) -> str:
    """The name mmaction2's ResNet gives torchvision's parameter ``torchvision_key``."""
    return "backbone." + _rename(torchvision_key, to_torchvision=False)


def _from_mmaction2(path: Path, state: dict[str, Tensor]) -> Pretrained:
    """A recognizer's ``state_dict`` -> its backbone in torchvision's names and its classifier.
    Keys of its backbone that are already torchvision's (mmaction2's ``torchvision.resnet50``
    backbones) are kept as they are; the fit to datp's backbone is checked by the caller."""
    backbone: dict[str, Tensor] = {}
    classifier: dict[str, Tensor] = {}
    names: dict[str, str] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            ours = _rename(key.removeprefix("backbone."), to_torchvision=True)
            backbone[ours] = value
            names[ours] = key
        elif key in ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"):
            classifier[key.rpartition(".")[2]] = value
        elif key.startswith(("cls_head.", "data_preprocessor.")):
            continue  # the head's other parts (none in TSNHead) and normalization buffers
        else:
            raise PretrainedError(
                f"{path}: {key} is not a parameter of an mmaction2 TSN recognizer with a ResNet "
                "backbone (datp reads backbone.* and cls_head.fc_cls.*)"
            )
    if not backbone:
        raise PretrainedError(f"{path}: its state_dict has no backbone.* parameters")
    return Pretrained(path, "mmaction2", backbone, classifier, names)


def read_pretrained(path: str | Path, *, setting: str = SETTING) -> Pretrained:
    """Read a local file with ``torch.load(weights_only=True)``: a torchvision state dict, a datp
    checkpoint (a dict whose ``model`` holds the TSN's state dict) or an mmaction2 checkpoint (a
    dict whose ``state_dict`` holds a recognizer's)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise PretrainedError(
            f"{path}: pretrained parameters are a folder, not a file: give the path of a "
            "torchvision state dict or of a datp or mmaction2 checkpoint file in it"
            if path.is_dir() else f"{path}: pretrained parameters are not a regular file"
        )
    if not path.is_file():
        raise PretrainedError(
            f"{path}: pretrained parameters do not exist: give the path of a torchvision state "
            f'dict, a datp or mmaction2 checkpoint, "{IMAGENET}" or a torchvision weights name '
            f"(downloaded once into torch hub's cache), or leave {setting} empty "
            f"{_without(setting)}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PretrainedError(
            f"{path}: pretrained parameters cannot be loaded: {describe_load_error(error, path)}"
        ) from error
    kind = "torchvision"
    if (parameters := model_parameters(state)) is not None:
        kind, state = "datp", parameters
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        kind, state = "mmaction2", state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedError(f"{path}: not a state dict of tensors")
    state = {_strip_wrappers(k): v for k, v in state.items()}
    if kind == "mmaction2":
        return _from_mmaction2(path, state)
    classifier = {}
    if kind == "datp" and "fc.weight" in state:
        classifier = {k: state[f"fc.{k}"] for k in ("weight", "bias") if f"fc.{k}" in state}
    return Pretrained(path, kind, state, classifier, {})


def load_pretrained(
    spec: str | Path, *, backbone: str, download: Download | None = None
) -> Pretrained:
    """:func:`locate` then :func:`read_pretrained`."""
    return read_pretrained(locate(spec, backbone=backbone, download=download))


def take_classifier(fc: nn.Linear, pretrained: Pretrained) -> None:
    """Copy the classifier of a datp or mmaction2 recognizer into ``fc`` (``model.
    pretrained_classifier``); its class count and feature size must be ``fc``'s."""
    weight, bias = pretrained.classifier.get("weight"), pretrained.classifier.get("bias")
    if weight is None or bias is None:
        raise PretrainedError(
            f"model.pretrained_classifier = true, but {pretrained.path} has no classifier datp "
            "can take (only datp and mmaction2 recognizer checkpoints have one); set it to false"
        )
    if tuple(weight.shape) != tuple(fc.weight.shape) or tuple(bias.shape) != tuple(fc.bias.shape):
        raise PretrainedError(
            f"model.pretrained_classifier = true, but the classifier of {pretrained.path} has "
            f"{weight.shape[0]} classes of {weight.shape[-1]} features and this model "
            f"{fc.out_features} of {fc.in_features}; set it to false to train a new one"
        )
    with torch.no_grad():
        fc.weight.copy_(weight)
        fc.bias.copy_(bias)
