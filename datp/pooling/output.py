"""What every temporal pooling returns, and the input checks they share.

Dimension key: B batch, N segments, C classes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from datp.pooling.functional import PoolSpace, pooled_log_probabilities, segment_centres


class PooledScores(NamedTuple):
    """What a pooling returns.

    ``scores [B, C]``: the pooled vector. With ``pool="probabilities"`` it is not a
    distribution (Eq. (3) makes its entries sum to ``sum(w) / ||w||_2``), so do not feed it to
    ``cross_entropy``: train on ``log_probs``, as ``nll_loss(out.log_probs, labels)``.

    ``weights [B, N]``: the temporal weight each segment received (the generator's w_i for DATP,
    the pooling coefficients for the baselines).

    ``log_probs [B, C]``: the log-probabilities of the pooled vector, right for either pool space
    (``datp.pooling.functional.pooled_log_probabilities``).

    ``mixture [B, 3, K]``: for a pooling that weights with a mixture of Gaussians (DATP's MoG,
    the random Gaussians), its ``rho``, ``mu`` and ``sigma`` stacked, so that the weights can be
    evaluated at any time (weak localization, ``datp.detection``); None for the others.
    """

    scores: Tensor
    weights: Tensor
    log_probs: Tensor
    mixture: Tensor | None = None


def pooling_output(scores: Tensor, weights: Tensor, pool: PoolSpace,
                   mixture: Tensor | None = None) -> PooledScores:
    """The output of a pooling that pooled ``scores [B, C]`` in ``pool`` space (``mixture``:
    :attr:`PooledScores.mixture`).

    Under autocast (``train.amp``: bf16 or fp16) the log-probabilities are computed in float32
    outside it, whatever precision the pooling ran in: the loss and the metrics take them as
    they are."""
    device_type = scores.device.type
    if not torch.is_autocast_enabled(device_type):
        return PooledScores(scores=scores, weights=weights,
                            log_probs=pooled_log_probabilities(scores, pool), mixture=mixture)
    with torch.autocast(device_type, enabled=False):
        log_probs = pooled_log_probabilities(scores.float(), pool)  # [B, C]
    return PooledScores(scores=scores, weights=weights, log_probs=log_probs, mixture=mixture)


def check_pooling_inputs(scores: Tensor, features: Tensor | None, times: Tensor | None) -> Tensor:
    """Validate shapes at the module boundary and return the times ``[B, N]``."""
    if scores.dim() != 3:
        raise ValueError(f"expected scores [B, N, C], got {tuple(scores.shape)}")
    b, n = scores.shape[:2]
    if features is not None and tuple(features.shape[:2]) != (b, n):
        raise ValueError(
            f"features must start with [B, N] = [{b}, {n}], got {tuple(features.shape)}"
        )
    if times is None:
        return segment_centres(b, n, device=scores.device, dtype=scores.dtype)
    if tuple(times.shape) != (b, n):
        raise ValueError(f"expected times [B, N] = [{b}, {n}], got {tuple(times.shape)}")
    return times
