"""What every temporal pooling returns, and the input checks they share.

Dimension key: B batch, N segments, C classes.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from datp.pooling.functional import segment_centres


class PooledScores(NamedTuple):
    """``scores [B, C]``: the pooled vector; ``weights [B, N]``: the temporal weight each segment
    received (the generator's w_i for DATP, the pooling coefficients for the baselines)."""

    scores: Tensor
    weights: Tensor


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
