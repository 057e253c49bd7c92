"""The TSN segment network with a pluggable temporal pooling (DATP or a baseline).

Dimension key: B videos, N segments, D_in input channels (3 RGB, 2L flow), H, W image size,
D feature channels, h, w feature-map size, C classes.

    inputs [B, N, D_in, H, W]
      -> backbone on [B*N, D_in, H, W]        -> conv maps [B*N, D, h, w]
      -> global average pool, dropout, fc    -> segment logits [B, N, C]
      -> pooling(segment logits, features, times), where features are the softmax scores
         [B, N, C], the pooled features [B, N, D] or the conv maps [B, N, D, h, w] (Table 1)
      -> TSNOutput(scores [B, C], weights [B, N], segment_scores [B, N, C], log_probs [B, C])
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from datp.choices import AuxInput
from datp.models.backbone import Backbone, batch_norms

log = logging.getLogger(__name__)


AUX_FEATURES: dict[AuxInput, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "scores": lambda maps, pooled, logits: torch.softmax(logits.float(), dim=-1),  # [B, N, C]
    "sequence": lambda maps, pooled, logits: pooled,  # [B, N, D]
    "conv": lambda maps, pooled, logits: maps,  # [B, N, D, h, w]
}
"""pooling.aux_input -> what the pooling's auxiliary net reads, from the conv maps ``[B, N, D, h,
w]``, their spatial means ``[B, N, D]`` and the segment logits ``[B, N, C]``."""


class TSNOutput(NamedTuple):
    scores: Tensor  # [B, C] pooled video scores
    weights: Tensor  # [B, N] temporal weights
    segment_scores: Tensor  # [B, N, C] per-segment logits before pooling
    log_probs: Tensor  # [B, C] log-probabilities of the pooled scores (train on these)
    mixture: Tensor | None = None  # [B, 3, K] a mixture pooling's rho, mu, sigma (else None)


class TSN(nn.Module):
    """A segment network shared over the N segments, followed by temporal pooling.

    Args:
        backbone: the per-segment trunk (:func:`datp.models.build_backbone`).
        num_classes: C.
        pooling: any module of :mod:`datp.pooling`, already built.
        aux_input: what the pooling's auxiliary net reads (:data:`AUX_FEATURES`; paper Table 1
            compares ``"scores"`` and ``"conv"``). Poolings without an auxiliary net ignore it.
        dropout: probability of the dropout before the classifier.
        partial_bn: TSN's partial BN: the affine parameters of every BatchNorm but the first
            are frozen now, their statistics when :meth:`freeze_partial_bn` is called.
        channels_last: run the backbone on channels-last images (give the model's parameters
            the same memory format with ``model.to(memory_format=torch.channels_last)``).
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        num_classes: int,
        pooling: nn.Module,
        aux_input: str = "conv",
        dropout: float = 0.5,
        partial_bn: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if aux_input not in AUX_FEATURES:
            raise ValueError(f"aux_input must be one of {', '.join(AUX_FEATURES)}, got "
                             f"{aux_input!r}")
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.feature_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.001)  # TSN's initialization of the new classifier
        nn.init.zeros_(self.fc.bias)
        self.pooling = pooling
        self.aux_input = aux_input
        self.num_classes = num_classes
        self.partial_bn = partial_bn
        self.channels_last = channels_last
        self._statistics_frozen = False
        if partial_bn:
            # The affine parameters are frozen here, before an optimizer or a
            # DistributedDataParallel wrapper sees them: DDP waits for a gradient of every
            # parameter that required one when it was built, so freezing them later would stall
            # it. The statistics are frozen by freeze_partial_bn().
            for bn in batch_norms(self.backbone)[1:]:
                if bn.affine:
                    bn.weight.requires_grad_(False)
                    bn.bias.requires_grad_(False)

    def freeze_partial_bn(self) -> None:
        """TSN's partial BN, statistics part: from now on every BatchNorm of the backbone but the
        first keeps its running mean and variance (it runs in eval mode, also under
        ``train()``). The train loop calls this from the second epoch on, so the first epoch
        adapts the statistics to the new modality. Only for a model built with
        ``partial_bn=True``."""
        if not self.partial_bn:
            raise RuntimeError("freeze_partial_bn() needs a TSN built with partial_bn=True")
        self._statistics_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> TSN:
        super().train(mode)
        if mode and self._statistics_frozen:
            for bn in batch_norms(self.backbone)[1:]:
                bn.eval()
        return self

    def forward(self, inputs: Tensor, times: Tensor | None = None) -> TSNOutput:
        """inputs ``[B, N, D_in, H, W]``, times ``[B, N]`` in [0, 1] (None: segment centres)."""
        logits, features = self.segment_outputs(inputs)
        return self.pool(logits, features, times)

    def segment_outputs(self, inputs: Tensor, *, reduce: bool = False
                        ) -> tuple[Tensor, Tensor | None]:
        """The per-segment part of :meth:`forward`: inputs ``[B, n, D_in, H, W]`` -> segment
        logits ``[B, n, C]`` and what the pooling reads of each segment (:data:`AUX_FEATURES`).
        With ``reduce`` the features are reduced per segment as far as the pooling allows (its
        ``segment_features``: ``[B, n, R]`` for DATP's conv net, None for a pooling that reads
        none), so that a long video runs a chunk of segments at a time and keeps only that
        (``datp.engine.predict``); :meth:`pool` takes either."""
        if inputs.dim() != 5 or inputs.shape[2] != self.backbone.in_channels:
            raise ValueError(
                f"expected inputs [B, N, {self.backbone.in_channels}, H, W], "
                f"got {tuple(inputs.shape)}"
            )
        b, n = inputs.shape[:2]
        # One memory layout whatever the loader delivered (a batch stacked in this process keeps
        # its items' strides, a loader worker's is contiguous): the convolutions' sums follow it.
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = inputs.flatten(0, 1).contiguous(memory_format=layout)  # [B*N, D_in, H, W]
        maps = self.backbone(x)  # [B*N, D, h, w]
        pooled = maps.mean(dim=(-2, -1))  # [B*N, D]
        # reshape, not unflatten: a traced unflatten fixes B in later shape reads (ONNX export)
        logits = self.fc(self.dropout(pooled)).reshape(b, n, -1)  # [B, N, C]
        features = AUX_FEATURES[self.aux_input](
            maps.reshape(b, n, *maps.shape[1:]), pooled.reshape(b, n, -1), logits
        )
        if reduce:
            segment_features = getattr(self.pooling, "segment_features", None)
            features = None if segment_features is None else segment_features(features)
        return logits, features

    def pool(self, logits: Tensor, features: Tensor | None, times: Tensor | None) -> TSNOutput:
        """The pooling part of :meth:`forward`: logits ``[B, N, C]``, features as
        :meth:`segment_outputs` gives them, times ``[B, N]``."""
        out = self.pooling(logits, features, times)
        return TSNOutput(scores=out.scores, weights=out.weights, segment_scores=logits,
                         log_probs=out.log_probs, mixture=out.mixture)

    def feature_size(self, image_size: int) -> int:
        """h (= w) of the conv maps for a square input of ``image_size`` (the mode is kept)."""
        return self.backbone.feature_size(image_size)
