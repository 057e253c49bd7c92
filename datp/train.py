"""Training of one stream: a TSN segment network with its temporal pooling, video-level labels only.

Dimension key: B videos, N segments, D_in input channels, H, W image size, C classes.

The loop reads top to bottom: set up the run folder, build data and model from the config, resume
if asked, then epochs of (train steps, evaluation, atomic checkpoint). A run folder holds

    config.toml     the resolved config
    run.json        git revision, command line, device, start time
    metrics.jsonl   one JSON object per logged step and per evaluation
    checkpoints/    last.pt (after every epoch, and on Ctrl-C), best.pt (best test top-1)
    tensorboard/    the same scalars, when tensorboard is installed

Randomness is reseeded from (seed, epoch) at every epoch start, so resuming from the end of an epoch
reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datp.checkpoint import (
    CheckpointError,
    git_revision,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from datp.config import Config, dump_toml, to_dict
from datp.distributed import (
    DistributedContext,
    EpochShardSampler,
    barrier,
    init_distributed,
    shutdown,
)
from datp.inference import forward_batch

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass(frozen=True)
class StepInfo:
    epoch: int
    step: int
    steps_in_epoch: int
    loss: float
    accuracy: float
    videos_per_second: float
    lr: float


@dataclass(frozen=True)
class DataBundle:
    """What the loop needs from the data layer."""

    train: Dataset
    test: Dataset | None
    classes: list[str]
    collate: Callable | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """TSN's SGD (momentum) or AdamW. Weight decay on weights, not on biases and norm layers;
    the pooling module's parameters learn at ``lr * pooling_lr_factor``."""
    t = config.train
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decays = parameter.dim() > 1 and not name.endswith(".bias")
        groups.setdefault((name.startswith("pooling."), decays), []).append(parameter)
    param_groups = [
        {
            "params": params,
            "weight_decay": t.weight_decay if decays else 0.0,
            "lr_factor": t.pooling_lr_factor if in_pooling else 1.0,
            "lr": t.lr * (t.pooling_lr_factor if in_pooling else 1.0),
        }
        for (in_pooling, decays), params in groups.items()
    ]
    if t.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=t.lr)
    raise ValueError(f"train.optimizer must be 'sgd' or 'adamw', got {t.optimizer!r}")


def learning_rate_factor(config: Config, step: int, steps_per_epoch: int) -> float:
    """Factor on the base learning rate at a global step: linear warm-up, then step or cosine."""
    t = config.train
    epoch = step / steps_per_epoch
    if t.warmup_epochs and epoch < t.warmup_epochs:
        return (step + 1) / (t.warmup_epochs * steps_per_epoch)
    if t.schedule == "step":
        return 0.1 ** sum(epoch >= boundary for boundary in t.lr_steps)
    if t.schedule == "cosine":
        span = max(t.epochs - t.warmup_epochs, 1e-9)
        progress = min((epoch - t.warmup_epochs) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"train.schedule must be 'step' or 'cosine', got {t.schedule!r}")


class RunLog:
    """metrics.jsonl plus TensorBoard when it is installed; only the main process writes."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.info("tensorboard is not installed; metrics go to %s only", self.path)

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _prepare_run_dir(
    run_dir: Path, config: Config, resume: bool, context: DistributedContext
) -> Path | None:
    """Create the run folder; return the checkpoint to resume from, if any."""
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists() and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run ({last}); pass --resume to continue it or choose "
            "another --out"
        )
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dump_toml(config))
        if not last.exists():
            (run_dir / "run.json").write_text(
                json.dumps(
                    {
                        "git_revision": git_revision(),
                        "command": sys.argv,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "world_size": context.world_size,
                    },
                    indent=2,
                )
            )
    return last if last.exists() else None


def _check_resumable(state: dict[str, Any], config: Config, path: Path) -> None:
    saved = state.get("config", {})
    for section in ("model", "pooling"):
        if saved.get(section) != to_dict(config)[section]:
            raise CheckpointError(
                f"{path} was made with another [{section}] configuration "
                f"({saved.get(section)}); resume with the same settings or start a new run"
            )


def train(
    config: Config,
    *,
    run_dir: Path,
    data: DataBundle,
    model: nn.Module,
    resume: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` as ``config`` says; returns the final evaluation metrics.

    ``model`` maps ``(inputs [B, N, D_in, H, W], times [B, N])`` to an output with ``scores
    [B, C]``, and has a ``pooling`` attribute. Raises NonFiniteLossError on a NaN loss and
    KeyboardInterrupt after saving a checkpoint when interrupted.
    """
    from datp.evaluate import collect
    from datp.metrics import summarize

    t = config.train
    run_dir = Path(run_dir)
    device = resolve_device(t.device)
    context = init_distributed(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    resume_from = _prepare_run_dir(run_dir, config, resume, context)
    barrier(context)

    model = model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")

    sampler = EpochShardSampler(
        len(data.train), seed=t.seed, rank=context.rank, world_size=context.world_size
    )
    loader_generator = torch.Generator()
    train_loader = DataLoader(
        data.train,
        batch_size=t.batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        collate_fn=data.collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=loader_generator,
        persistent_workers=False,
    )
    steps_per_epoch = len(sampler) // t.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"the training split has {len(data.train)} videos, fewer than one batch of "
            f"{t.batch_size} per process; lower train.batch_size"
        )
    if t.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t.max_steps_per_epoch)

    start_epoch, start_step, global_step, best = 0, 0, 0, -1.0
    if resume_from is not None:
        state = load_checkpoint(resume_from, map_location=device)
        _check_resumable(state, config, resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"] + 1
        start_step = state.get("step_in_epoch", 0)
        global_step, best = state["global_step"], state["best_metric"]
        log.info("resuming %s at epoch %d step %d", resume_from, start_epoch, start_step)

    trained = model
    if context.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if t.compile:
        trained = torch.compile(trained)

    test_loader = None
    if data.test is not None and context.is_main:
        test_loader = DataLoader(
            data.test,
            batch_size=max(1, t.batch_size // max(config.data.test_crops, 1)),
            shuffle=False,
            num_workers=config.data.workers,
            collate_fn=data.collate,
        )
    run_log = RunLog(run_dir, enabled=context.is_main)
    checkpoint_dir = run_dir / "checkpoints"

    flow_extraction = None
    if config.data.modality == "flow":  # kept so that prediction computes flow the same way
        from datp.data.dataset import flow_folder
        from datp.flow.storage import read_settings

        flow_extraction = read_settings(flow_folder(config.data.root, config.data.flow_root))

    def snapshot(epoch_done: int, step_in_epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch_done,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "best_metric": best,
            "rng": rng_states(),
            "config": to_dict(config),
            "classes": list(data.classes),
            "git_revision": git_revision(),
            "datp_version": _version(),
            "flow_extraction": flow_extraction,
        }

    metrics: dict[str, Any] = {}
    epoch, step = start_epoch, start_step
    try:
        for epoch in range(start_epoch, t.epochs):
            resuming_mid_epoch = epoch == start_epoch and start_step > 0
            if resuming_mid_epoch:
                restore_rng_states(state["rng"])
            else:
                seed_everything(t.seed * 1_000_003 + epoch)
            loader_generator.manual_seed(t.seed * 1_000_003 + epoch)
            sampler.set_epoch(epoch, start=start_step * t.batch_size if resuming_mid_epoch else 0)
            model.train()
            if config.model.partial_bn and epoch > 0 and hasattr(model, "freeze_partial_bn"):
                model.freeze_partial_bn()
            step = start_step if resuming_mid_epoch else 0
            tick, seen, running_loss, running_correct = time.perf_counter(), 0, 0.0, 0
            for batch in train_loader:
                if step >= steps_per_epoch:
                    break
                factor = learning_rate_factor(config, global_step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = t.lr * factor * group["lr_factor"]
                labels = batch["label"].to(device)
                log_probs = forward_batch(trained, batch, device, t.amp).log_probs
                loss = nn.functional.nll_loss(log_probs, labels)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"the loss became {loss.item()} at epoch {epoch} step {step} "
                        f"(lr {t.lr * factor:.3g}); nothing was saved from "
                        f"this epoch, the last good checkpoint is {checkpoint_dir / 'last.pt'}. "
                        "Lower train.lr, enable train.clip_grad, or use train.amp=none."
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if t.clip_grad > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                global_step += 1
                seen += labels.shape[0]
                running_loss += loss.item() * labels.shape[0]
                running_correct += int((log_probs.argmax(-1) == labels).sum())
                elapsed = max(time.perf_counter() - tick, 1e-9)
                info = StepInfo(
                    epoch=epoch,
                    step=step,
                    steps_in_epoch=steps_per_epoch,
                    loss=running_loss / seen,
                    accuracy=running_correct / seen,
                    videos_per_second=seen * context.world_size / elapsed,
                    lr=t.lr * factor,
                )
                if on_step is not None and context.is_main:
                    on_step(info)
                if step % log_every == 0 or step == steps_per_epoch:
                    run_log.write({"kind": "train", **info.__dict__}, global_step)
            start_step = 0
            last_epoch = epoch == t.epochs - 1
            if test_loader is not None and (
                last_epoch or (t.eval_every and (epoch + 1) % t.eval_every == 0)
            ):
                collected = collect(model, test_loader, device, t.amp)
                scores, labels = collected.log_probs, collected.labels
                metrics = {
                    "kind": "eval",
                    "epoch": epoch,
                    "step": global_step,
                    **summarize(scores, labels),
                }
                run_log.write(metrics, global_step)
                log.info("epoch %d: %s", epoch, _format(metrics))
                if metrics["top1"] > best:
                    best = metrics["top1"]
                    save_checkpoint(checkpoint_dir / "best.pt", snapshot(epoch, 0))
            if context.is_main:
                save_checkpoint(checkpoint_dir / "last.pt", snapshot(epoch, 0))
            barrier(context)
    except KeyboardInterrupt:
        if context.is_main and 0 < step < steps_per_epoch:
            save_checkpoint(checkpoint_dir / "last.pt", snapshot(epoch - 1, step))
            log.warning(
                "interrupted at epoch %d step %d; saved %s; continue with --resume",
                epoch,
                step,
                checkpoint_dir / "last.pt",
            )
        raise
    finally:
        run_log.close()
        shutdown(context)
    return metrics


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if isinstance(v, float))


def _version() -> str:
    import datp

    return datp.__version__
