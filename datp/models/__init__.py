"""The segment network: per-segment backbones and the TSN model around a temporal pooling."""

from datp.models.backbone import (
    BACKBONES,
    Backbone,
    PretrainedError,
    batch_norms,
    build_backbone,
    read_pretrained,
)
from datp.models.tsn import TSN, TSNOutput

__all__ = [
    "BACKBONES",
    "TSN",
    "Backbone",
    "PretrainedError",
    "TSNOutput",
    "batch_norms",
    "build_backbone",
    "read_pretrained",
]
