"""The DATP module: auxiliary ConvNet -> weights generator -> weighting by Eq. (3).

Dimension key: B batch, N segments, C classes, D feature channels, h, w feature-map size,
P size of theta.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from datp.pooling.functional import PoolSpace, segment_values, weighted_pool
from datp.pooling.output import PooledScores, check_pooling_inputs, pooling_output


class DATPPooling(nn.Module):
    """Deep Adaptive Temporal Pooling, a drop-in pooling layer for any sequence.

    Takes built sub-modules: ``aux_net`` maps the features to theta ``[B, P]`` and ``generator``
    maps theta and the segment times to temporal weights ``[B, N]``. The last layer of the aux net
    (its ``regression`` attribute) is initialized so that the generator starts from the paper's
    initialization whatever the features are.
    """

    def __init__(
        self,
        *,
        aux_net: nn.Module,
        generator: nn.Module,
        pool: PoolSpace = "probabilities",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        segment_values(torch.zeros(1, 1, 1), pool)  # validates pool early
        self.aux_net = aux_net
        self.generator = generator
        self.pool = pool
        self.eps = eps
        regression = aux_net.regression
        if regression.out_features != generator.num_parameters:
            raise ValueError(
                f"aux_net regresses {regression.out_features} parameters but the generator needs "
                f"{generator.num_parameters}"
            )
        with torch.no_grad():
            regression.weight.zero_()
            regression.bias.copy_(generator.initial_theta())

    def forward(
        self, scores: Tensor, features: Tensor | None = None, times: Tensor | None = None
    ) -> PooledScores:
        """Pool ``scores [B, N, C]``.

        Args:
            scores: per-segment scores (logits, or any per-segment vectors).
            features: what the auxiliary net reads: ``[B, N, D]`` or ``[B, N, D, h, w]``;
                None reads the values being pooled (softmax scores when pooling probabilities).
            times: ``[B, N]`` normalized segment times; None means segment centres.

        Returns:
            ``PooledScores(scores [B, C], weights [B, N], log_probs [B, C], mixture)`` where
            weights are the generator's w_i and ``mixture [B, 3, K]`` a MoG's (rho, mu, sigma),
            None for the discrete generator; train on ``log_probs`` (``scores`` is not a
            distribution when pooling probabilities).
        """
        times = check_pooling_inputs(scores, features, times)
        values = segment_values(scores, self.pool)  # [B, N, C]
        theta = self.aux_net(values if features is None else features)  # [B, P]
        generated = self.generator(theta, times.to(theta.dtype))
        pooled = weighted_pool(values, generated.scaled.to(values.dtype), eps=self.eps)  # [B, C]
        mixture = None if generated.mixture is None else generated.mixture.detach()
        return pooling_output(pooled, generated.weights, self.pool, mixture)

    def segment_features(self, features: Tensor) -> Tensor:
        """What the auxiliary net keeps of each segment's ``features [B, N, ...]``
        (``[B, N, R]`` for conv maps, the features themselves otherwise): the forward pass
        takes either, so a long video is reduced a chunk of segments at a time."""
        reduce = getattr(self.aux_net, "segment_features", None)
        return features if reduce is None else reduce(features)
