"""The segment network: per-segment backbones and the TSN model around a temporal pooling."""

from datp.models.backbone import (
    BACKBONES,
    Backbone,
    batch_norms,
    build_backbone,
)
from datp.models.build import build_feature_head, build_network, build_tsn
from datp.models.pretrained import (
    Pretrained,
    PretrainedError,
    load_pretrained,
    read_pretrained,
    take_classifier,
)
from datp.models.tsn import TSN, TSNOutput

__all__ = [
    "BACKBONES",
    "TSN",
    "Backbone",
    "Pretrained",
    "PretrainedError",
    "TSNOutput",
    "batch_norms",
    "build_backbone",
    "build_feature_head",
    "build_network",
    "build_tsn",
    "load_pretrained",
    "read_pretrained",
    "take_classifier",
]
