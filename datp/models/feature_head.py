"""A temporal head on cached features: TSN's per-segment classifier and any pooling.

Dimension key: B videos, N segments, D feature channels, C classes.

    inputs [B, N, D]   features of a frozen backbone at the N sampled steps
      -> dropout, fc                           -> segment logits [B, N, C]
      -> pooling(segment logits, features, times), where features are the inputs [B, N, D]
         (aux_input "sequence") or the softmax scores [B, N, C] ("scores")
      -> TSNOutput(scores [B, C], weights [B, N], segment_scores [B, N, C], log_probs [B, C])

It is :class:`datp.models.tsn.TSN` after its backbone's global average pooling: the same
classifier (initialized as TSN's) and the same call, so training, evaluation and the test
schemes take either model. On features of the same frozen backbone at the same sampled frames
the two give the same outputs and the same gradients of the head.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from datp.models.tsn import TSNOutput

FeatureAuxInput = Literal["sequence", "scores"]
FEATURE_AUX_INPUTS: tuple[str, ...] = ("sequence", "scores")


class Dropout(nn.Dropout):
    """``nn.Dropout`` (each element kept with probability 1 - p, scaled by 1 / (1 - p)), its mask
    drawn on a CPU from 16 random bits per element, four to each 64-bit draw (so p is rounded to
    the nearest 1/65536). ``bernoulli_``, behind ``F.dropout`` there, took 51 ms for the forward
    and backward of a batch of 128 x 25 x 768 (one thread, benchmarks/features_head.py's batch),
    half of the head's step; ``torch.rand``'s float per element 19 to 28 ms; these bits 12 to 14
    ms (2026-12-07, busy 2-core machine, process time)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1:
            return super().forward(x)
        count = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64)
        bits = words.view(torch.int16)[:count].view(x.shape)  # uniform in [-2^15, 2^15)
        keep = bits >= round(self.p * 65536) - 32768  # P(keep) = 1 - p, to 1/65536
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class FeatureHead(nn.Module):
    """Per-segment classifier over feature sequences, then a temporal pooling.

    Args:
        feature_channels: D.
        num_classes: C.
        pooling: any module of :mod:`datp.pooling`, already built (for DATP reading the
            features: ``build_pooling(..., aux_input="sequence", feature_channels=D)``).
        aux_input: what the pooling's auxiliary net reads: ``"sequence"``, the features
            ``[B, N, D]``, or ``"scores"``, the per-segment softmax scores ``[B, N, C]``.
        dropout: probability of the dropout before the classifier.
    """

    def __init__(
        self, *, feature_channels: int, num_classes: int, pooling: nn.Module,
        aux_input: FeatureAuxInput = "sequence", dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if aux_input not in FEATURE_AUX_INPUTS:
            raise ValueError(f"aux_input must be one of {FEATURE_AUX_INPUTS}, got {aux_input!r}")
        self.feature_channels = feature_channels
        self.num_classes = num_classes
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(feature_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.001)  # TSN's initialization of the new classifier
        nn.init.zeros_(self.fc.bias)
        self.pooling = pooling
        self.aux_input = aux_input

    def forward(self, inputs: Tensor, times: Tensor | None = None) -> TSNOutput:
        """inputs ``[B, N, D]``, times ``[B, N]`` in [0, 1] (None: segment centres)."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.feature_channels:
            raise ValueError(f"expected inputs [B, N, {self.feature_channels}], "
                             f"got {tuple(inputs.shape)}")
        logits = self.fc(self.dropout(inputs))  # [B, N, C]
        # The auxiliary net reads the features [B, N, D], or the softmax scores [B, N, C].
        features = inputs if self.aux_input == "sequence" else torch.softmax(logits.float(), -1)
        out = self.pooling(logits, features, times)
        return TSNOutput(scores=out.scores, weights=out.weights, segment_scores=logits,
                         log_probs=out.log_probs, mixture=out.mixture)
