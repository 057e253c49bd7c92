"""The backbone of a trained datp checkpoint as a frozen feature extractor (``datp features
--checkpoint``).

B images, D_in input channels (3 RGB, 2L flow), H, W image size, V views, K units, S side,
D feature channels.

This is where the features part reaches the engine, in one function: the checkpoint is rebuilt
as a stream (:func:`datp.engine.build.load_stream`), which says how it reads a video. The
features are what the checkpoint's TSN classifier reads: its backbone's conv
maps globally averaged, ``[B, D]``. Inputs are prepared as datp evaluates one centre crop
(datp's resize, crop and normalization of the checkpoint's RGB or flow), so that a head on
these features sees what the checkpoint's own model sees in its one-crop test.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from datp.checkpoint import file_sha256
from datp.data.functional import IMAGENET_MEAN, IMAGENET_STD
from datp.data.transforms import EvalTransform
from datp.engine.build import load_stream
from datp.features.backbones import FrozenBackbone, freeze
from datp.models.backbone import Backbone


class PooledBackbone(nn.Module):
    """``[B, D_in, H, W] -> [B, D]``: a datp backbone's conv maps, globally averaged."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.forward_pooled(x)


class OneCrop:
    """datp's test transform with one view: uint8 ``[K, D_in, H, W]`` -> float32 ``[K, D_in, S,
    S]`` (the centre crop, normalized)."""

    def __init__(self, transform: EvalTransform) -> None:
        assert transform.crops == 1 and transform.normalize
        self.transform = transform

    def __call__(self, units: Tensor) -> Tensor:
        return self.transform(units)[0]  # [1, K, D_in, S, S] -> [K, D_in, S, S]


def checkpoint_backbone(checkpoint: str | Path, *, overrides: tuple[str, ...] = ()
                        ) -> FrozenBackbone:
    """The frozen backbone of the datp checkpoint ``checkpoint`` (RGB or flow), with the
    one-crop test transform of its configuration (``overrides``: ``section.key=value``)."""
    path = Path(checkpoint)
    stream = load_stream(path, overrides=overrides, crops=1)
    flow = stream.modality == "flow"
    backbone = stream.model.backbone
    settings = {
        "backbone": {
            "name": backbone.name,
            "kind": "flow" if flow else "image",
            "weights": path.name,
            "weights_file": path.name,
            "weights_sha256": file_sha256(path),
            "classifier": "the TSN's fc (dropout, Linear) left out: its globally average-pooled "
                          "conv maps",
            "channels": backbone.feature_channels,
            "checkpoint_classes": len(stream.classes),
            "flow_extraction": stream.flow_extraction,
        },
        "transform": {
            "preset": "datp EvalTransform, 1 crop",
            "modality": stream.modality,
            "resize_short": stream.resize_short or stream.image_size,
            "crop": stream.image_size,
            # The numbers, as a torchvision preset's record gives them, so that two records
            # compare what the network saw, not a phrase.
            **({"normalize": "flow to [-1, 1]: q / 128 - 1"} if flow else
               {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}),
            "interpolation": "bilinear",
            "antialias": True,
        },
    }
    return FrozenBackbone(
        module=freeze(PooledBackbone(backbone)), kind="flow" if flow else "image",
        channels=backbone.feature_channels, transform=OneCrop(stream.transform),
        settings=settings, clip_length=stream.flow_length if flow else None,
    )
