"""Running a model on videos, shared by training, evaluation and prediction: the device, one
forward pass over a batch, and a pass over a whole loader that keeps every video's results.

Dimension key: B videos, V crops, N segments, D_in input channels, H, W image size, C classes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from datp.choices import Amp
from datp.data.device_decode import decode_ahead, inputs_on
from datp.distributed import DistributedContext, all_gather, shard_range
from datp.errors import DataError, InputError, UserError
from datp.pooling.functional import pooled_log_probabilities
from datp.score_file import ScoreFile

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device={name!r} but CUDA is not available on this machine")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a CPU
    with AMX or AVX512-BF16 (elsewhere autocast emulates it, slower than float32: a CPU without
    it trained the UCF101 recipe 2.8x slower under bf16, measured before this repository)."""
    if device.type == "cuda":  # Ampere and later; is_bf16_supported() counts emulation too
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


AMP_DTYPES: dict[Amp, Callable[[torch.device], torch.dtype | None]] = {
    "none": lambda device: None,
    "bf16": lambda device: torch.bfloat16,
    "fp16": lambda device: torch.float16,
    "auto": lambda device: torch.bfloat16 if native_bf16(device) else None,
}
"""train.amp -> the autocast dtype on a device (None: full precision)."""


def precision_warning(amp: str, device: torch.device) -> str | None:
    """The one line to say when ``amp`` asks for bf16 on a device that emulates it."""
    if amp == "bf16" and device.type == "cpu" and not native_bf16(device):
        return ('train.amp = "bf16" on a CPU without native bfloat16 (no AMX or AVX512-BF16): '
                'autocast emulates it, slower than float32 (2.8x on the UCF101 recipe); use '
                'train.amp = "auto" (bf16 where it is native) or "none"')
    return None


def prepare_device(device: torch.device, amp: str) -> None:
    """On CUDA let cuDNN time its algorithms for the shapes it meets (cudnn.benchmark: the
    fastest for the step's fixed shapes; GPU runs are not bit-reproducible anyway, their
    reductions' order varies); say once when ``amp`` emulates bf16 on this device."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    warning = precision_warning(amp, device)
    if warning is not None:
        log.warning("%s", warning)


def autocast(device: torch.device, amp: str):
    """Mixed precision context: ``none``, ``bf16``, ``fp16`` (CUDA only) or ``auto``."""
    if amp not in AMP_DTYPES:
        raise InputError(f"train.amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise InputError(f"train.amp = \"fp16\" needs CUDA, and this runs on {device}; use "
                         "bf16, auto or none (--set train.amp=auto)")
    dtype = AMP_DTYPES[amp](device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class BatchResult(NamedTuple):
    """Per video: ``pooled [B, C]`` (averaged over crops), ``log_probs [B, C]``, and from the
    first crop the temporal ``weights [B, N]``, per-segment logits ``segment_scores [B, N, C]``
    and a mixture pooling's ``mixture [B, 3, K]`` (None when the model does not return them)."""

    pooled: Tensor
    log_probs: Tensor
    weights: Tensor
    segment_scores: Tensor | None
    mixture: Tensor | None = None


def core_model(model: nn.Module) -> nn.Module:
    """The model under DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def forward_batch(
    model: nn.Module, batch: dict[str, Any], device: torch.device, amp: str = "none"
) -> BatchResult:
    """Run the model on ``batch["inputs"]`` (``[B, N, D_in, H, W]``, or ``[B, V, N, D_in, H, W]``
    with V test crops folded into the batch and averaged after pooling, as TSN does).

    The contract with the loader: ``inputs`` are float32 and normalized, or uint8 (a loader
    built with ``data.normalize_on_device``: cropped, resized, flipped, nothing else), which are
    copied as they are (``non_blocking``: from pinned memory the copy does not hold the host)
    and normalized on ``device``, bit for bit as the loader would have: RGB when D_in is 3, flow
    otherwise (D_in = 2L is even). An :class:`EncodedBatch` (``data.decode = "device"``) is
    decoded on ``device`` first (:func:`datp.data.device_decode.inputs_on`)."""
    precision = autocast(device, amp)
    inputs = inputs_on(batch["inputs"], device)  # float32 [B, (V,) N, D_in, H, W]
    times = batch["times"].to(device, non_blocking=True)
    crops = 1
    if inputs.dim() == 6:
        crops = inputs.shape[1]
        inputs = inputs.flatten(0, 1)  # [B*V, N, D_in, H, W]
        times = times.repeat_interleave(crops, dim=0)  # [B*V, N]
    with precision:
        out = model(inputs, times)
    # Only evaluation has crops, and it runs the model itself, never its training wrappers.
    return crops_result(out, crops, pool=model.pooling.pool if crops > 1 else None)


def crops_result(out: Any, crops: int, *, pool: str | None) -> BatchResult:
    """A model's output for ``B * V`` views (V crops of each video folded into the batch, video
    by video) as one :class:`BatchResult` per video: the crops' mean pooled vector, and the
    weights, per-segment scores and mixture of the first crop; ``pool``, the pooling's space,
    is needed when ``crops > 1``."""
    pooled = out.scores.float().unflatten(0, (-1, crops))  # [B, V, C]
    weights = out.weights.float().unflatten(0, (-1, crops))[:, 0]  # [B, N]
    segment_scores = getattr(out, "segment_scores", None)
    if segment_scores is not None:
        segment_scores = segment_scores.float().unflatten(0, (-1, crops))[:, 0]  # [B, N, C]
    mixture = getattr(out, "mixture", None)
    if mixture is not None:
        mixture = mixture.float().unflatten(0, (-1, crops))[:, 0]  # [B, 3, K]
    pooled = pooled.mean(dim=1)  # [B, C]
    # One crop: the model's own, in float32 whatever the autocast (datp.pooling.output); more:
    # those of the crops' mean pooled vector, as TSN tests.
    log_probs = out.log_probs.float() if crops == 1 else pooled_log_probabilities(pooled, pool)
    return BatchResult(pooled, log_probs, weights, segment_scores, mixture)


@dataclass
class Collected:
    """Everything an evaluation keeps per video, in loader order."""

    videos: list[str]
    labels: Tensor  # [V]
    pooled: Tensor  # [V, C] the pooled vectors ("raw scores")
    log_probs: Tensor  # [V, C]
    weights: list[Tensor]  # V x [N]
    segment_scores: list[Tensor]  # V x [N, C] (empty if the model gives none)
    times: list[Tensor]  # V x [N]
    skipped: list[str] = field(default_factory=list)
    """Videos of the split that could not be read ("video: reason"), not among the V."""
    mixtures: list[Tensor] = field(default_factory=list)
    """V x [3, K]: a mixture pooling's rho, mu, sigma per video (empty for other poolings)."""

    @classmethod
    def of(cls, scores: ScoreFile) -> Collected:
        """What an evaluation's score file kept per video (files written before ``skipped``
        existed read with none)."""
        return cls(videos=scores.videos, labels=scores.labels, pooled=scores.pooled,
                   log_probs=scores.log_probs, weights=scores.weights,
                   segment_scores=scores.segment_scores, times=scores.times,
                   skipped=scores.skipped, mixtures=scores.mixtures)


def collect(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    amp: str = "none",
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Collected:
    """Run ``model`` over every batch of ``loader`` and keep per-video results.

    Batches from :func:`datp.data.dataset.collate_videos` may list videos that could not be
    read under ``skipped``, and a dataset built with ``skip_bad_videos`` lists those that do
    not exist as ``missing``: both are kept in ``Collected.skipped``, never silently dropped.
    ``progress(done, total)`` is called after each batch, counting videos. Raises DataError
    when no video could be read.
    """
    return _require_videos(_collect(model, loader, device, amp, progress=progress))


def collect_sharded(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    amp: str,
    context: DistributedContext,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Collected:
    """:func:`collect` on every process, over its ``loader`` of its :func:`shard` of the test
    split, gathered: every process returns what one process's :func:`collect` over the whole
    split would, in the same order. Every process must call it together; an error on any
    of them (an unreadable video) is raised on all."""
    failure: Exception | None = None
    try:
        part: Collected | str = _collect(model, loader, device, amp, progress=progress)
    except Exception as error:  # any error: the others must not wait for this process forever
        if not context.enabled:
            raise
        failure, part = error, f"process {context.rank}: {error}"
    parts = all_gather(part, context)
    if failure is not None and not isinstance(failure, UserError):
        raise failure  # a bug or an out-of-memory keeps its traceback where it happened
    errors = [p for p in parts if isinstance(p, str)]
    if errors:
        raise DataError(errors)
    return _require_videos(_concatenate(parts))


def shard(dataset: Dataset, context: DistributedContext) -> Dataset:
    """This process's contiguous share of the test split (:func:`datp.distributed.shard_range`);
    the first share also carries the split's ``missing`` videos, so that the gathered results
    list them once. The dataset itself without torchrun."""
    if not context.enabled:
        return dataset
    part = Subset(dataset, shard_range(len(dataset), context))
    part.missing = list(getattr(dataset, "missing", [])) if context.is_main else []
    return part


def _concatenate(parts: list[Collected]) -> Collected:
    """Collected results of consecutive shards as one, in order."""
    if len(parts) == 1:
        return parts[0]
    kept = [p for p in parts if len(p.labels)]
    out = Collected(
        [], torch.empty(0, dtype=torch.long), torch.empty(0), torch.empty(0), [], [], [],
        skipped=[line for p in parts for line in p.skipped],
    )
    if kept:
        out.labels = torch.cat([p.labels for p in kept])
        out.pooled = torch.cat([p.pooled for p in kept])
        out.log_probs = torch.cat([p.log_probs for p in kept])
    for name in ("videos", "weights", "segment_scores", "times", "mixtures"):
        setattr(out, name, [item for p in kept for item in getattr(p, name)])
    return out


def _require_videos(out: Collected) -> Collected:
    if not len(out.labels):
        reason = f" ({len(out.skipped)} unreadable, e.g. {out.skipped[0]})" if out.skipped else ""
        raise DataError(f"the test split yielded no video to evaluate{reason}")
    return out


@torch.no_grad()
def _collect(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    amp: str,
    *,
    progress: Callable[[int, int], None] | None,
) -> Collected:
    """:func:`collect` less its check that some video was read (a shard may have none)."""
    model.eval()
    out = Collected(
        [], torch.empty(0, dtype=torch.long), torch.empty(0), torch.empty(0), [], [], []
    )
    dataset = getattr(loader, "dataset", None)
    total = len(dataset) if dataset is not None else 0
    out.skipped += list(getattr(dataset, "missing", []))  # named by the annotations, not on disk
    labels, pooled, log_probs = [], [], []
    done = 0
    for batch in decode_ahead(loader, device):  # CUDA: the next batch decodes meanwhile
        skipped = batch.get("skipped", [])
        out.skipped += [f"{s.video}: {s.reason}" for s in skipped]
        done += len(skipped)
        if "inputs" in batch:
            result = forward_batch(model, batch, device, amp)
            labels.append(torch.as_tensor(batch["label"]))
            pooled.append(result.pooled.cpu())
            log_probs.append(result.log_probs.cpu())
            out.weights += list(result.weights.cpu())
            if result.segment_scores is not None:
                out.segment_scores += list(result.segment_scores.cpu())
            if result.mixture is not None:
                out.mixtures += list(result.mixture.cpu())
            out.times += list(batch["times"].float())
            out.videos += [str(v) for v in batch.get("video", [""] * len(labels[-1]))]
            done += len(labels[-1])
        if progress is not None:
            progress(done, max(total, done))
    if labels:
        out.labels, out.pooled, out.log_probs = (
            torch.cat(labels),
            torch.cat(pooled),
            torch.cat(log_probs),
        )
    return out
