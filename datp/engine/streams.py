"""A trained stream rebuilt from its checkpoint for prediction and export, and the checks that
two streams fit together (one RGB, one flow, the same classes in the same order).

Dimension key: N segments, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from datp.errors import DataError, InputError

if TYPE_CHECKING:
    from datp.data.features import FeatureReading
    from datp.data.transforms import EvalTransform


@dataclass(frozen=True)
class FeatureStream:
    """How a head on features reads a video: the features it trained on and how they were
    made, how a feature file is read, and where the backbone that made them is."""

    record: dict
    """The feature set's ``describe()`` as the head's checkpoint recorded it (its layout, and
    for datp's own features their ``settings``: backbone, transform, grid, dtype)."""
    reading: FeatureReading
    """The config's ``data.features_*``: how a file of a foreign layout is read."""
    backbone_file: str = ""
    """``data.features_backbone``: the local file of a backbone that is not a torchvision
    weights name (a datp checkpoint, a parameter file); empty: not given."""


@dataclass
class Stream:
    """A checkpoint rebuilt for prediction (``datp.engine.build.load_stream``): the model in eval
    mode and how it reads a video, from the configuration saved in the checkpoint."""

    checkpoint: Path
    model: nn.Module
    classes: list[str]
    modality: str
    segments: int
    """N at test time."""
    flow_length: int
    """L: frames per segment (1 for RGB)."""
    decoder: str
    image_size: int
    resize_short: int
    """0: the short side resized to ``image_size``."""
    transform: EvalTransform
    """The test transform the test split of this configuration is read with."""
    flow_extraction: dict | None = None
    """How the stream's training flow was computed (``datp flow``'s settings), when known."""
    segment_shape: tuple[int, ...] = ()
    """What the model reads of one segment: ``(D_in, S, S)``, or ``(D,)`` for features."""
    features: FeatureStream | None = None
    """A head on features: how it reads a video (None: the model reads frames)."""


def check_segments(model: nn.Module, segments: int, path: Path) -> None:
    """Surface the pooling's own refusal of N before any video is decoded."""
    from datp.pooling import DiscreteGenerator

    for module in model.modules():
        if isinstance(module, DiscreteGenerator):
            try:
                module(torch.zeros(1, module.num_segments), torch.zeros(1, segments))
            except ValueError as error:
                raise InputError(f"{path}: {error}") from error


def check_streams(streams: Sequence[Stream], class_names: Sequence[str] | None = None) -> None:
    """Streams must name the same classes in the same order (and those of ``class_names``)."""
    if not streams:
        raise InputError("prediction needs at least one stream")
    reference = streams[0]
    if len(streams) == 2:
        if reference.modality != "rgb" or streams[1].modality != "flow":
            raise InputError(
                f"two streams must be an RGB checkpoint and a flow checkpoint; got "
                f"{reference.checkpoint} ({reference.modality}) and {streams[1].checkpoint} "
                f"({streams[1].modality})"
            )
    elif len(streams) > 2:
        raise InputError(f"at most two streams (RGB and flow), got {len(streams)}")
    for stream in streams[1:]:
        if stream.classes != reference.classes:
            raise InputError(
                f"{stream.checkpoint} and {reference.checkpoint} name different classes "
                f"({_describe(stream.classes)} vs {_describe(reference.classes)})"
            )
    if class_names is not None and list(class_names) != reference.classes:
        raise InputError(
            f"the class list ({_describe(class_names)}) does not match the classes "
            f"{reference.checkpoint} was trained on ({_describe(reference.classes)})"
        )


def _describe(classes: Sequence[str]) -> str:
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{len(classes)}: {shown}"


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line: ``Name`` or UCF101's ``classInd.txt`` (``1 Name``)."""
    from datp.data.splits import read_ucf101_classes

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the class list is empty")
    if all(len(line.split()) == 2 and line.split()[0].isdigit() for line in lines):
        return read_ucf101_classes(path)
    return lines
