"""Build a temporal pooling from its settings: the one place that maps pooling names to code.

Dimension key: N segments, C classes, D feature channels, h = w feature-map size.

:func:`build_pooling` reads the ``[pooling]`` section (:class:`datp.config.PoolingConfig`), or the
same settings given as keywords (the drop-in call of the README). What the surrounding model
decides (C, N, D, h) comes as explicit arguments. Each name of a choice is an entry of a table
below (:data:`POOLINGS`, :data:`GENERATORS`, :data:`AUX_NETS`), held against its ``Literal`` in
``datp.choices`` by ``tests/test_choices.py``: a name without its code fails the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from datp.choices import AuxInput, GeneratorKind, PoolingKind
from datp.config import ConfigError, PoolingConfig, section_from_settings
from datp.pooling.aux_nets import ConvFeatureAuxNet, SequenceAuxNet
from datp.pooling.baselines import (
    AttentionPooling,
    AveragePooling,
    MaxPooling,
    RandomGaussianPooling,
)
from datp.pooling.datp import DATPPooling
from datp.pooling.generators import DiscreteGenerator, MixtureOfGaussians


@dataclass(frozen=True)
class Surroundings:
    """What the model around a pooling decides: the sizes it pools and reads, and a seed."""

    num_classes: int
    """C, the width of the pooled vectors."""
    num_segments: int
    """N in training (the auxiliary net's temporal bins; the discrete generator's length)."""
    feature_channels: int | None
    """D of the features the auxiliary net reads (aux_input "sequence" or "conv")."""
    feature_size: int | None
    """h = w of the conv maps (aux_input "conv")."""
    seed: int
    """The random Gaussians' generator."""
    sequence_layout: bool = False
    """The sequence auxiliary net in the features' own layout (``SequenceAuxNet``'s option):
    the feature heads' choice."""


# --- weights generators -----------------------------------------------------------------------

def _mixture(p: PoolingConfig, s: Surroundings) -> nn.Module:
    return MixtureOfGaussians(num_gaussians=p.num_gaussians, init_sigma=p.init_sigma,
                              sigma_floor=p.sigma_floor)


def _discrete(p: PoolingConfig, s: Surroundings) -> nn.Module:
    return DiscreteGenerator(num_segments=s.num_segments, activation=p.discrete_activation)


GENERATORS: dict[GeneratorKind, Callable[[PoolingConfig, Surroundings], nn.Module]] = {
    "mog": _mixture,
    "discrete": _discrete,
}
"""pooling.generator -> the weights generator (paper Sec. 3.2)."""


# --- auxiliary nets ---------------------------------------------------------------------------

def _temporal(p: PoolingConfig, s: Surroundings, generator: nn.Module) -> dict[str, Any]:
    return dict(num_parameters=generator.num_parameters, temporal_bins=s.num_segments,
                conv_channels=tuple(p.conv_channels), fc_channels=tuple(p.fc_channels),
                normalize_input=p.normalize_aux_input)


def _sequence_net(p: PoolingConfig, s: Surroundings, generator: nn.Module) -> nn.Module:
    return SequenceAuxNet(in_channels=_channels(p, s), sequence_layout=s.sequence_layout,
                          **_temporal(p, s, generator))


def _conv_net(p: PoolingConfig, s: Surroundings, generator: nn.Module) -> nn.Module:
    if s.feature_size is None:
        raise ValueError("aux_input='conv' needs feature_size (h = w of the conv maps)")
    return ConvFeatureAuxNet(in_channels=_channels(p, s), feature_size=s.feature_size,
                             reduce_channels=p.reduce_channels, **_temporal(p, s, generator))


AUX_NETS: dict[AuxInput, Callable[[PoolingConfig, Surroundings, nn.Module], nn.Module]] = {
    "scores": _sequence_net,
    "sequence": _sequence_net,
    "conv": _conv_net,
}
"""pooling.aux_input -> DATP's auxiliary net (paper Table 2) reading that input."""


def _channels(p: PoolingConfig, s: Surroundings) -> int:
    """The channels the auxiliary net (or the attention MLP) reads."""
    if p.aux_input == "scores":
        return s.num_classes
    if s.feature_channels is None:
        raise ValueError(f"aux_input={p.aux_input!r} needs feature_channels")
    return s.feature_channels


# --- poolings ---------------------------------------------------------------------------------

def _datp(p: PoolingConfig, s: Surroundings) -> nn.Module:
    generator = GENERATORS[p.generator](p, s)
    aux_net = AUX_NETS[p.aux_input](p, s, generator)
    return DATPPooling(aux_net=aux_net, generator=generator, pool=p.pool)


def _attention(p: PoolingConfig, s: Surroundings) -> nn.Module:
    return AttentionPooling(in_channels=_channels(p, s), pool=p.pool)


def _random_gaussians(p: PoolingConfig, s: Surroundings) -> nn.Module:
    return RandomGaussianPooling(num_gaussians=p.num_gaussians, pool=p.pool, seed=s.seed)


POOLINGS: dict[PoolingKind, Callable[[PoolingConfig, Surroundings], nn.Module]] = {
    "datp": _datp,
    "average": lambda p, s: AveragePooling(pool=p.pool),
    "max": lambda p, s: MaxPooling(pool=p.pool),
    "attention": _attention,
    "random_gaussians": _random_gaussians,
}
"""pooling.kind -> the pooling module."""


# --- the builder ------------------------------------------------------------------------------

_DROP_IN_REQUIRED = ("kind", "pool")
"""Settings the drop-in call must give (it always has: they have no default there)."""
_DROP_IN_DEFAULTS = {"aux_input": "scores"}
"""As a drop-in layer the auxiliary net reads what is pooled unless told otherwise."""


def build_pooling(
    pooling: PoolingConfig | None = None,
    /,
    *,
    num_classes: int,
    num_segments: int,
    feature_channels: int | None = None,
    feature_size: int | None = None,
    seed: int = 0,
    sequence_layout: bool = False,
    **settings: Any,
) -> nn.Module:
    """One pooling module, from the ``[pooling]`` section or from its settings as keywords.

    Args:
        pooling: the section; leave it out to give its settings as keywords instead
            (``kind="datp", pool="logits", aux_input="sequence", generator="mog", ...``, the
            names of :class:`datp.config.PoolingConfig`; ``kind`` and ``pool`` are required,
            ``aux_input`` defaults to ``"scores"``), checked as a config file is.
        num_classes: C, the width of the pooled vectors.
        num_segments: N at training time (the auxiliary net's temporal bins; the discrete
            generator's fixed length).
        feature_channels: D, for ``aux_input`` ``"sequence"`` and ``"conv"``.
        feature_size: h = w, for ``"conv"``.
        seed: the random Gaussians' generator.
        sequence_layout: the sequence auxiliary net computes in the features' ``[B, N, D]``
            layout (:class:`datp.pooling.aux_nets.SequenceAuxNet`): the same function, faster
            for a wide D on a CPU; what the heads on feature files use.
    """
    if pooling is None:
        pooling = _section(settings)
    elif settings:
        raise TypeError(f"build_pooling takes a section or settings, not both: {sorted(settings)}")
    surroundings = Surroundings(num_classes=num_classes, num_segments=num_segments,
                                feature_channels=feature_channels, feature_size=feature_size,
                                seed=seed, sequence_layout=sequence_layout)
    return POOLINGS[pooling.kind](pooling, surroundings)


def _section(settings: dict[str, Any]) -> PoolingConfig:
    """The section the drop-in keywords describe; a ``ValueError`` (``ConfigError``) naming every
    unknown or wrong setting, as for a config file."""
    missing = [name for name in _DROP_IN_REQUIRED if name not in settings]
    if missing:
        raise TypeError(f"build_pooling() needs {' and '.join(map(repr, missing))} (or a "
                        "PoolingConfig section)")
    values = {**_DROP_IN_DEFAULTS, **settings}
    kind = values["kind"]
    if isinstance(kind, str) and kind not in POOLINGS:
        raise ConfigError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}")
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return section_from_settings(PoolingConfig, values, origin="build_pooling")

