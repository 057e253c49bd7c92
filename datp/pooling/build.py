"""Build a temporal pooling from plain settings: the one place that maps names to classes.

Dimension key: N segments, C classes, D feature channels, h = w feature-map size.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Literal

from torch import nn

from datp.config import (
    GENERATORS,
    POOLING_KINDS,
    DiscreteActivation,
    GeneratorKind,
    PoolingConfig,
    PoolingKind,
)
from datp.config import AuxInput as ModelAuxInput
from datp.pooling.aux_nets import ConvFeatureAuxNet, SequenceAuxNet
from datp.pooling.baselines import (
    AttentionPooling,
    AveragePooling,
    MaxPooling,
    RandomGaussianPooling,
)
from datp.pooling.datp import DATPPooling
from datp.pooling.functional import PoolSpace
from datp.pooling.generators import DiscreteGenerator, MixtureOfGaussians

AuxInput = Literal[ModelAuxInput, "sequence"]
"""What a pooling's auxiliary net reads: TSN's choices (``datp.config.AuxInput``) and any feature
sequence ``[B, N, D]``."""
AUX_INPUTS: tuple[str, ...] = typing.get_args(AuxInput)
_DEFAULT = PoolingConfig()
"""The defaults of the settings the config has too, written once: in ``datp.config``."""


def _choose(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


def build_generator(
    *,
    generator: GeneratorKind,
    num_segments: int,
    num_gaussians: int = _DEFAULT.num_gaussians,
    init_sigma: float = _DEFAULT.init_sigma,
    sigma_floor: float = _DEFAULT.sigma_floor,
    discrete_activation: DiscreteActivation = _DEFAULT.discrete_activation,
) -> nn.Module:
    """``"mog"``: a mixture of ``num_gaussians`` Gaussians; ``"discrete"``: N weights."""
    if _choose(generator, GENERATORS, "weights generator") == "mog":
        return MixtureOfGaussians(
            num_gaussians=num_gaussians, init_sigma=init_sigma, sigma_floor=sigma_floor
        )
    return DiscreteGenerator(num_segments=num_segments, activation=discrete_activation)


def build_pooling(
    *,
    kind: PoolingKind,
    num_classes: int,
    num_segments: int,
    pool: PoolSpace,
    aux_input: AuxInput = "scores",
    feature_channels: int | None = None,
    feature_size: int | None = None,
    generator: GeneratorKind = _DEFAULT.generator,
    num_gaussians: int = _DEFAULT.num_gaussians,
    init_sigma: float = _DEFAULT.init_sigma,
    sigma_floor: float = _DEFAULT.sigma_floor,
    discrete_activation: DiscreteActivation = _DEFAULT.discrete_activation,
    conv_channels: Sequence[int] = tuple(_DEFAULT.conv_channels),
    fc_channels: Sequence[int] = tuple(_DEFAULT.fc_channels),
    reduce_channels: int = _DEFAULT.reduce_channels,
    normalize_aux_input: bool = _DEFAULT.normalize_aux_input,
    attention_hidden: int = 128,
    random_sigma_range: tuple[float, float] = (0.05, 0.5),
    seed: int = 0,
) -> nn.Module:
    """Build one pooling module.

    Args:
        kind: one of ``POOLING_KINDS``.
        num_classes: C.
        num_segments: N at training time (the auxiliary net's temporal bins; the discrete
            generator's fixed length).
        pool: pool ``"probabilities"`` (the paper) or ``"logits"`` (TSN).
        aux_input: what DATP's auxiliary net (or the attention MLP) reads: ``"scores"`` the
            per-segment softmax scores ``[B, N, C]``, ``"sequence"`` any features ``[B, N, D]``,
            ``"conv"`` last-conv maps ``[B, N, D, h, w]``.
        feature_channels: D, for ``"sequence"`` and ``"conv"``.
        feature_size: h = w, for ``"conv"``.
    """
    _choose(kind, POOLING_KINDS, "pooling")
    _choose(aux_input, AUX_INPUTS, "auxiliary input")
    if aux_input != "scores" and kind in ("datp", "attention") and feature_channels is None:
        raise ValueError(f"aux_input={aux_input!r} needs feature_channels")
    in_channels = num_classes if aux_input == "scores" else feature_channels
    if kind == "average":
        return AveragePooling(pool=pool)
    if kind == "max":
        return MaxPooling(pool=pool)
    if kind == "attention":
        return AttentionPooling(
            in_channels=in_channels, hidden_channels=attention_hidden, pool=pool
        )
    if kind == "random_gaussians":
        return RandomGaussianPooling(
            num_gaussians=num_gaussians, sigma_range=random_sigma_range, pool=pool, seed=seed
        )
    weights_generator = build_generator(
        generator=generator,
        num_segments=num_segments,
        num_gaussians=num_gaussians,
        init_sigma=init_sigma,
        sigma_floor=sigma_floor,
        discrete_activation=discrete_activation,
    )
    temporal = dict(
        num_parameters=weights_generator.num_parameters,
        temporal_bins=num_segments,
        conv_channels=conv_channels,
        fc_channels=fc_channels,
        normalize_input=normalize_aux_input,
    )
    if aux_input == "conv":
        if feature_size is None:
            raise ValueError("aux_input='conv' needs feature_size (h = w of the conv maps)")
        aux_net: nn.Module = ConvFeatureAuxNet(
            in_channels=in_channels,
            feature_size=feature_size,
            reduce_channels=reduce_channels,
            **temporal,
        )
    else:
        aux_net = SequenceAuxNet(in_channels=in_channels, **temporal)
    return DATPPooling(aux_net=aux_net, generator=weights_generator, pool=pool)
