"""The ``[model]`` section made into the network that reads a segment: the TSN on frames or flow,
a :class:`datp.models.feature_head.FeatureHead` on feature vectors. The one reader of
:class:`datp.config.ModelConfig`, with the ``[pooling]`` section handed on to its builder.

Dimension key: N segments, C classes, D_in input channels, S image side, D feature channels,
h = w feature-map size.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from datp.config import ModelConfig, PoolingConfig
from datp.models.backbone import build_backbone
from datp.models.feature_head import FEATURE_AUX_INPUTS, FeatureHead
from datp.models.pretrained import load_pretrained, take_classifier
from datp.models.tsn import TSN
from datp.pooling.build import build_pooling

log = logging.getLogger(__name__)


def build_network(
    model: ModelConfig,
    pooling: PoolingConfig,
    *,
    num_classes: int,
    segment_shape: tuple[int, ...],
    num_segments: int,
    seed: int,
    channels_last: bool = False,
) -> TSN | FeatureHead:
    """The network that reads segments of ``segment_shape`` (what the data builder says a
    segment is, ``datp.data.build.segment_shape``): :func:`build_tsn` for frames or flow
    ``(D_in, S, S)``, :func:`build_feature_head` for feature vectors ``(D,)``."""
    if len(segment_shape) == 1:
        return build_feature_head(model, pooling, num_classes=num_classes,
                                  feature_channels=segment_shape[0], num_segments=num_segments,
                                  seed=seed)
    in_channels, image_size, _ = segment_shape
    return build_tsn(model, pooling, num_classes=num_classes, in_channels=in_channels,
                     image_size=image_size, num_segments=num_segments, seed=seed,
                     channels_last=channels_last)


def build_feature_head(
    model: ModelConfig,
    pooling: PoolingConfig,
    *,
    num_classes: int,
    feature_channels: int,
    num_segments: int,
    seed: int,
) -> FeatureHead:
    """TSN's classifier (``model.dropout``) and the pooling of ``pooling`` on feature sequences
    of D = ``feature_channels``, its initial parameters drawn from ``seed`` alone (as
    :func:`build_tsn`'s). The model section's backbone settings have nothing to build here. An
    auxiliary net reading the sequence computes in its own layout (the same function, faster:
    ``SequenceAuxNet(sequence_layout=True)``); a pooling that reads nothing ignores
    ``pooling.aux_input``."""
    aux_input = pooling.aux_input if pooling.aux_input in FEATURE_AUX_INPUTS else "sequence"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        temporal = build_pooling(pooling, num_classes=num_classes, num_segments=num_segments,
                                 feature_channels=feature_channels, seed=seed,
                                 sequence_layout=True)
        return FeatureHead(feature_channels=feature_channels, num_classes=num_classes,
                           pooling=temporal, aux_input=aux_input, dropout=model.dropout)


def build_tsn(
    model: ModelConfig,
    pooling: PoolingConfig,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    num_segments: int,
    seed: int,
    channels_last: bool = False,
) -> TSN:
    """The TSN the sections describe: a ``model.backbone`` of ``in_channels`` (3 RGB, 2L flow)
    starting from ``model.pretrained``, C = ``num_classes``, and the pooling of ``pooling``
    built for N = ``num_segments`` and the backbone's maps at ``image_size``.

    Its initial parameters depend on ``seed`` only: they are drawn from torch's generator
    seeded with it, inside ``torch.random.fork_rng`` so that the caller's random state is left as
    it was. Two runs of one config start from the same parameters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(model, pooling, num_classes=num_classes, in_channels=in_channels,
                      image_size=image_size, num_segments=num_segments, seed=seed,
                      channels_last=channels_last)


def _build(model: ModelConfig, pooling: PoolingConfig, *, num_classes: int, in_channels: int,
           image_size: int, num_segments: int, seed: int, channels_last: bool) -> TSN:
    if model.partial_bn and not model.pretrained:
        log.warning(
            "model.partial_bn freezes BatchNorm statistics at their initial values when "
            "no pretrained parameters are given; set model.partial_bn=false to train "
            "from scratch"
        )
    pretrained = (load_pretrained(model.pretrained, backbone=model.backbone)
                  if model.pretrained else None)
    backbone = build_backbone(model.backbone, in_channels=in_channels, pretrained=pretrained)
    _draw_as_before(backbone.feature_channels, num_classes)
    temporal = build_pooling(
        pooling, num_classes=num_classes, num_segments=num_segments,
        feature_channels=backbone.feature_channels,
        feature_size=backbone.feature_size(image_size), seed=seed,
    )
    network = TSN(backbone=backbone, num_classes=num_classes, pooling=temporal,
                  aux_input=pooling.aux_input, dropout=model.dropout,
                  partial_bn=model.partial_bn, channels_last=channels_last)
    if pretrained is not None and model.pretrained_classifier:
        take_classifier(network.fc, pretrained)
    return network


def _draw_as_before(feature_channels: int, num_classes: int) -> None:
    """Draw the random numbers datp 0.1 drew here (for a classifier it built only to ask the
    backbone its feature size), so that every seed still gives the parameters it gave: runs,
    checkpoints and the published figures reproduce."""
    classifier = nn.Linear(feature_channels, num_classes)
    nn.init.normal_(classifier.weight, std=0.001)
