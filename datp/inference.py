"""One forward pass over a batch of videos, shared by training, evaluation and prediction.

Dimension key: B videos, V crops, N segments, D_in input channels, H, W image size, C classes.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from datp.data.functional import normalize
from datp.pooling.functional import pooled_log_probabilities

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class BatchResult(NamedTuple):
    """Per video: ``pooled [B, C]`` (averaged over crops), ``log_probs [B, C]``, and from the
    first crop the temporal ``weights [B, N]`` and per-segment logits ``segment_scores [B, N, C]``
    (None when the model does not return them)."""

    pooled: Tensor
    log_probs: Tensor
    weights: Tensor
    segment_scores: Tensor | None


def autocast(device: torch.device, amp: str):
    """Mixed precision context: ``none``, ``bf16`` or ``fp16`` (CUDA only)."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("amp=fp16 needs CUDA; use bf16 or none on CPU")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def core_model(model: nn.Module) -> nn.Module:
    """The model under DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def pool_space(model: nn.Module) -> str:
    return getattr(core_model(model).pooling, "pool", "logits")


def forward_batch(
    model: nn.Module, batch: dict[str, Any], device: torch.device, amp: str = "none"
) -> BatchResult:
    """Run the model on ``batch["inputs"]`` (``[B, N, D_in, H, W]``, or ``[B, V, N, D_in, H, W]``
    with V test crops folded into the batch and averaged after pooling, as TSN does).

    uint8 inputs (a loader built with ``data.normalize_on_device``) are normalized here, on
    ``device``, after the copy: RGB when D_in is 3, flow otherwise (D_in = 2L is even)."""
    inputs = batch["inputs"].to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        inputs = normalize(inputs, modality="rgb" if inputs.shape[-3] == 3 else "flow")
    times = batch["times"].to(device, non_blocking=True)
    crops = 1
    if inputs.dim() == 6:
        crops = inputs.shape[1]
        inputs = inputs.flatten(0, 1)  # [B*V, N, D_in, H, W]
        times = times.repeat_interleave(crops, dim=0)  # [B*V, N]
    with autocast(device, amp):
        out = model(inputs, times)
    pooled = out.scores.float().unflatten(0, (-1, crops))  # [B, V, C]
    weights = out.weights.float().unflatten(0, (-1, crops))[:, 0]  # [B, N]
    segment_scores = getattr(out, "segment_scores", None)
    if segment_scores is not None:
        segment_scores = segment_scores.float().unflatten(0, (-1, crops))[:, 0]  # [B, N, C]
    pooled = pooled.mean(dim=1)  # [B, C]
    log_probs = pooled_log_probabilities(pooled, pool_space(model))
    return BatchResult(pooled, log_probs, weights, segment_scores)
