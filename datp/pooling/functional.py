"""The paper's equations as pure functions.

Dimension key: B batch, N segments, C classes (or channels of any pooled sequence), K Gaussians.

Eq. (1) gives the temporal weights of a mixture of K Gaussians evaluated at the segment times;
Eq. (3) pools per-segment vectors with them, ``S = sum_i w_i I_i / ||w||_2``. Eq. (3) does not
change when all weights are scaled by the same positive factor, which is what keeps it stable
here: the weights are computed in log space and shifted so that the largest is 1 before pooling,
so neither an underflowing density nor a vanishing norm can produce a non-finite value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from datp.choices import PoolSpace, names

POOL_SPACES: tuple[str, ...] = names(PoolSpace)
"""The spaces Eq. (3) pools in; :func:`segment_values` and :func:`pooled_log_probabilities`
branch on them and refuse any other."""

# The smallest mixture weight used inside a log; rho comes from a softmax and is never exactly 0
# in practice, but a user may pass zeros to the functional API.
_RHO_FLOOR = 1e-30
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def segment_centres(batch_size: int, num_segments: int, *, device=None, dtype=None) -> Tensor:
    """Normalized times ``(i + 0.5) / N`` of the segment centres, ``[B, N]``."""
    centres = (torch.arange(num_segments, device=device, dtype=dtype) + 0.5) / num_segments
    return centres.expand(batch_size, num_segments)


def mog_log_weights(times: Tensor, rho: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Logarithm of Eq. (1), ``[B, N]``.

    Args:
        times: ``[B, N]`` normalized segment times ``t_i``.
        rho: ``[B, K]`` mixture weights, ``>= 0``.
        mu: ``[B, K]`` means.
        sigma: ``[B, K]`` standard deviations, ``> 0`` (the paper calls sigma a variance; Eq. (1)
            and its gradients in Eq. (2) treat it as a standard deviation).
    """
    # [B, N, 1] against [B, 1, K] -> [B, N, K]
    z = (times.unsqueeze(-1) - mu.unsqueeze(-2)) / sigma.unsqueeze(-2)
    log_components = (
        torch.log(rho.clamp_min(_RHO_FLOOR)).unsqueeze(-2)
        - torch.log(sigma).unsqueeze(-2)
        - _LOG_SQRT_2PI
        - 0.5 * z * z
    )
    return torch.logsumexp(log_components, dim=-1)  # [B, N]


def mog_weights(times: Tensor, rho: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Eq. (1): ``w_i = sum_k rho_k N(t_i; mu_k, sigma_k^2)``, ``[B, N]``.

    The exponent is ``-(t_i - mu_k)^2 / (2 sigma_k^2)``; the paper's print lost the square.
    Arguments as in :func:`mog_log_weights`. For pooling prefer :func:`rescale_log_weights`, which
    cannot underflow.
    """
    return torch.exp(mog_log_weights(times, rho, mu, sigma))


def rescale_log_weights(log_weights: Tensor) -> Tensor:
    """Weights ``[B, N]`` proportional to ``exp(log_weights)`` whose largest entry is 1.

    Eq. (3) is invariant to this rescaling, and the result always has a norm of at least 1.
    """
    peak = log_weights.amax(dim=-1, keepdim=True).detach()
    return torch.exp(log_weights - peak)


def weighted_pool(values: Tensor, weights: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Eq. (3): ``S = sum_i w_i I_i / ||w||_2``.

    Args:
        values: ``[B, N, C]`` per-segment vectors ``I_i``.
        weights: ``[B, N]`` temporal weights ``w_i`` (any sign).
        eps: floor of ``||w||_2``; all-zero weights give a zero vector, not a division by zero.

    Returns:
        ``[B, C]`` pooled vector.
    """
    norm = torch.linalg.vector_norm(weights, dim=-1, keepdim=True).clamp_min(eps)  # [B, 1]
    coefficients = weights / norm  # [B, N]
    return torch.einsum("bn,bnc->bc", coefficients, values)


def segment_values(scores: Tensor, pool: PoolSpace) -> Tensor:
    """What gets pooled, ``[B, N, C]``: per-segment probabilities (the paper) or the raw scores."""
    if pool == "probabilities":
        return torch.softmax(scores, dim=-1)
    if pool == "logits":
        return scores
    raise ValueError(f"pool must be one of {POOL_SPACES}, got {pool!r}")


def pooled_log_probabilities(pooled: Tensor, pool: PoolSpace, *, floor: float = 1e-12) -> Tensor:
    """Log-probabilities ``[B, C]`` of a pooled vector ``[B, C]``, for the loss and the metrics.

    Pooled logits go through a log-softmax (TSN). Pooled probabilities are renormalized to sum to 1:
    Eq. (3) with non-negative weights is a convex combination of the segment distributions times
    ``sum(w) / ||w||_2``, so the renormalized vector is the weighted mean distribution, and the
    cross-entropy against it is the paper's "cross-entropy between pooled scores and labels".
    The floor only matters for weights of mixed sign (the discrete generator).
    """
    if pool == "logits":
        return torch.log_softmax(pooled, dim=-1)
    if pool == "probabilities":
        positive = pooled.clamp_min(floor)
        return torch.log(positive) - torch.log(positive.sum(dim=-1, keepdim=True))
    raise ValueError(f"pool must be one of {POOL_SPACES}, got {pool!r}")
