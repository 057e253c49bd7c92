"""Baseline temporal poolings behind the DATP interface.

Dimension key: B batch, N segments, C classes, D feature channels, K Gaussians.

- average: TSN's consensus, the mean over segments;
- max: the maximum over segments, per class;
- attention: a learned score per segment, softmax over segments, weighted sum;
- random Gaussians: Eq. (3) with a random mixture of Gaussians per video (the P1 test scheme).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from datp.pooling.functional import (
    PoolSpace,
    mog_log_weights,
    rescale_log_weights,
    segment_values,
    weighted_pool,
)
from datp.pooling.generators import random_mixture
from datp.pooling.output import PooledScores, check_pooling_inputs, pooling_output


class _ParameterFreePooling(nn.Module):
    """A pooling with nothing to learn: only the space it pools in."""

    def __init__(self, *, pool: PoolSpace = "logits") -> None:
        super().__init__()
        segment_values(torch.zeros(1, 1, 1), pool)  # validates pool early
        self.pool = pool


class AveragePooling(_ParameterFreePooling):
    """The mean over segments (TSN's average consensus)."""

    def forward(
        self, scores: Tensor, features: Tensor | None = None, times: Tensor | None = None
    ) -> PooledScores:
        """scores ``[B, N, C]`` -> ``[B, C]``; weights are ``1 / N``."""
        check_pooling_inputs(scores, features, times)
        values = segment_values(scores, self.pool)
        weights = torch.full(scores.shape[:2], 1.0 / scores.shape[1], device=scores.device)
        return pooling_output(values.mean(dim=1), weights.to(values.dtype), self.pool)


class MaxPooling(_ParameterFreePooling):
    """The maximum over segments, class by class."""

    def forward(
        self, scores: Tensor, features: Tensor | None = None, times: Tensor | None = None
    ) -> PooledScores:
        """scores ``[B, N, C]`` -> ``[B, C]``; weights mark, per video, the segment that gave the
        maximum of the top pooled class."""
        check_pooling_inputs(scores, features, times)
        values = segment_values(scores, self.pool)
        maximum, argmax = values.max(dim=1)  # [B, C], [B, C]
        top_class = maximum.argmax(dim=-1, keepdim=True)  # [B, 1]
        chosen = argmax.gather(1, top_class)  # [B, 1]
        weights = torch.zeros(scores.shape[:2], dtype=values.dtype, device=scores.device)
        return pooling_output(maximum, weights.scatter(1, chosen, 1.0), self.pool)


class AttentionPooling(nn.Module):
    """Softmax attention over segments: ``a = softmax_i(f(x_i))``, ``S = sum_i a_i I_i``.

    ``f`` is a small MLP on the per-segment features ``[B, N, D]`` (conv maps ``[B, N, D, h, w]``
    are averaged over space first). It starts at zero output, so at initialization it equals
    average pooling.
    """

    def __init__(
        self, *, in_channels: int, hidden_channels: int = 128, pool: PoolSpace = "logits"
    ) -> None:
        super().__init__()
        segment_values(torch.zeros(1, 1, 1), pool)
        self.pool = pool
        self.in_channels = in_channels
        self.score = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.Tanh(), nn.Linear(hidden_channels, 1)
        )
        with torch.no_grad():
            self.score[-1].weight.zero_()
            self.score[-1].bias.zero_()

    def segment_features(self, features: Tensor) -> Tensor:
        """What the MLP reads of each segment: ``[B, N, D]`` (conv maps averaged over space);
        the forward pass takes it as it takes the maps."""
        return features.mean(dim=(-2, -1)) if features.dim() == 5 else features

    def forward(
        self, scores: Tensor, features: Tensor | None = None, times: Tensor | None = None
    ) -> PooledScores:
        """scores ``[B, N, C]`` -> ``[B, C]``; weights are the attention ``a_i`` (sum to 1)."""
        check_pooling_inputs(scores, features, times)
        values = segment_values(scores, self.pool)
        x = values if features is None else self.segment_features(features)  # [B, N, D]
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected features [B, N, {self.in_channels}], got {tuple(x.shape)}")
        logits = self.score(x).squeeze(-1).nan_to_num(0.0, posinf=50.0, neginf=-50.0)  # [B, N]
        attention = torch.softmax(logits, dim=-1)
        return pooling_output(torch.einsum("bn,bnc->bc", attention, values), attention, self.pool)


class RandomGaussianPooling(nn.Module):
    """Eq. (3) with a random mixture of K Gaussians per video (Table 4, scheme P1).

    A fresh mixture is drawn at every call from ``seed`` onwards, so a whole evaluation is
    reproducible.
    """

    def __init__(
        self,
        *,
        num_gaussians: int = 2,
        sigma_range: tuple[float, float] = (0.05, 0.5),
        pool: PoolSpace = "probabilities",
        seed: int = 0,
    ) -> None:
        super().__init__()
        segment_values(torch.zeros(1, 1, 1), pool)
        self.pool = pool
        self.num_gaussians = num_gaussians
        self.sigma_range = sigma_range
        self.random = torch.Generator().manual_seed(seed)

    def forward(
        self, scores: Tensor, features: Tensor | None = None, times: Tensor | None = None
    ) -> PooledScores:
        """scores ``[B, N, C]`` -> ``[B, C]``; weights are the random mixture's ``w_i``."""
        times = check_pooling_inputs(scores, features, times)
        values = segment_values(scores, self.pool)
        rho, mu, sigma = (
            p.to(device=scores.device, dtype=values.dtype)
            for p in random_mixture(
                scores.shape[0],
                self.num_gaussians,
                sigma_range=self.sigma_range,
                generator=self.random,
            )
        )
        log_weights = mog_log_weights(times.to(values.dtype), rho, mu, sigma)
        result = weighted_pool(values, rescale_log_weights(log_weights))
        mixture = torch.stack([rho, mu, sigma], dim=1)  # [B, 3, K]
        return pooling_output(result, log_weights.exp(), self.pool, mixture)
