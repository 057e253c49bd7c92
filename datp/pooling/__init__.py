"""Deep Adaptive Temporal Pooling and the baselines it is compared with.

Every pooling is called as ``pooling(scores [B, N, C], features=None, times=None)`` and returns
``PooledScores(scores [B, C], weights [B, N], log_probs [B, C])``; train on ``log_probs``.
"""

from datp.pooling.aux_nets import ConvFeatureAuxNet, SequenceAuxNet
from datp.pooling.baselines import (
    AttentionPooling,
    AveragePooling,
    MaxPooling,
    RandomGaussianPooling,
)
from datp.pooling.build import POOLINGS, build_pooling
from datp.pooling.datp import DATPPooling
from datp.pooling.functional import (
    mog_weights,
    pooled_log_probabilities,
    segment_centres,
    weighted_pool,
)
from datp.pooling.generators import DiscreteGenerator, MixtureOfGaussians
from datp.pooling.output import PooledScores

__all__ = [
    "POOLINGS",
    "AttentionPooling",
    "AveragePooling",
    "ConvFeatureAuxNet",
    "DATPPooling",
    "DiscreteGenerator",
    "MaxPooling",
    "MixtureOfGaussians",
    "PooledScores",
    "RandomGaussianPooling",
    "SequenceAuxNet",
    "build_pooling",
    "mog_weights",
    "pooled_log_probabilities",
    "segment_centres",
    "weighted_pool",
]
