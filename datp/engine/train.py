"""Training of one stream: a TSN segment network with its temporal pooling, video-level labels only.

Dimension key: B videos, N segments, D_in input channels, H, W image size, C classes.

:func:`train` reads top to bottom: prepare the run folder (:mod:`datp.engine.run_folder`), resume,
then for every epoch train it, save it, evaluate it. Checkpoints go to ``checkpoints/last.pt``
(after every epoch, before its evaluation, and on Ctrl-C or a stop signal) and
``checkpoints/best.pt`` (best test top-1). The run folder is held by one process at a time
(:class:`datp.engine.run_folder.RunFolderLock`).

What survives what:

- an epoch's checkpoint is written before the epoch is evaluated, so a test video that kills the
  evaluation loses no training; resuming runs the evaluation that was due first;
- Ctrl-C saves the unfinished epoch's position, and resuming from it (or from the end of an
  epoch) reproduces the uninterrupted run exactly: randomness is reseeded from (seed, epoch) at
  every epoch start and the data order depends only on them;
- a stop signal (SIGTERM and SIGUSR1 by default: what Slurm, Kubernetes and torchrun send before
  they kill a job) acts like Ctrl-C and raises :class:`TrainingStopped` (see
  :class:`DeferredInterrupt`); under torchrun every process stops after the same step;
- a NaN loss stops the run and leaves the last good checkpoint as it was: a step never waits
  for the device (loss, accuracy and the finite-loss check stay there, :class:`_Tally`), so the
  check runs once per logging interval and before every save, and names the steps it covers;
- a checkpoint that cannot be written (a full disk) is an error naming the file, and the
  previous checkpoint stays intact (``datp.checkpoint.save_checkpoint``);
- resuming refuses any change of setting that alters what is learned (``datp.engine.resume``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from datp.checkpoint import restore_rng_states
from datp.config import Config
from datp.data.device_decode import EncodedBatch, decode_ahead, decode_batch
from datp.data.seeded import SeededItems
from datp.distributed import (
    DistributedContext,
    EpochShardSampler,
    all_reduce_sum,
    barrier,
    init_distributed,
    largest,
    process_device,
    shutdown,
)
from datp.engine.build import DataBundle, TrainingPlan, run_identity, training_plan
from datp.engine.inference import collect_sharded, forward_batch, resolve_device, shard
from datp.engine.optimizer import base_learning_rate, make_optimizer, set_learning_rate
from datp.engine.resume import RunIdentity
from datp.engine.run_folder import RunFolderLock, RunLog, open_run_folder
from datp.engine.run_state import Position, RunState
from datp.errors import InputError, UserError
from datp.scoring import evaluation_metrics, short_video_warning

log = logging.getLogger(__name__)


HOST_READ = "datp.engine.train.host_read"
"""The profiler range around the training loop's one read of the device per logging interval."""


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingStopped(KeyboardInterrupt):
    """A stop signal ended the run after ``last.pt`` was saved; ``--resume`` continues it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""What stops a run cleanly by default: Slurm (preemption, scancel, the time limit),
Kubernetes and torchrun's agent send SIGTERM; ``sbatch --signal=USR1@120`` sends SIGUSR1."""
STOPPABLE = ("TERM", "USR1", "USR2", "HUP", "QUIT", "XCPU")
"""The signals that may stop a run cleanly. Not INT (that is Ctrl-C), not KILL or STOP (they
cannot be caught), not CHLD (the loader's), not the fatal ones (SEGV, BUS, FPE)."""
STOP_CHECK_EVERY = 10
"""Under torchrun, the processes compare their stop requests every this many steps of an epoch
(one all-reduce of one number) and after every epoch."""


def stop_signals(text: str) -> tuple[signal.Signals, ...]:
    """``"TERM,USR1"`` (names with or without SIG, any case; ``none``: no signal) -> signals;
    raises ``InputError`` for a signal outside :data:`STOPPABLE`."""
    names = [name.strip().upper().removeprefix("SIG") for name in text.split(",")]
    if names == ["NONE"]:
        return ()
    wrong = [name for name in names if name not in STOPPABLE]
    if wrong or not names:
        raise InputError(
            f"stop signals {text!r}: {', '.join(wrong) or 'none named'} cannot stop a run; "
            f"choose among {', '.join(STOPPABLE)} (comma-separated), or none"
        )
    return tuple(dict.fromkeys(getattr(signal, f"SIG{name}") for name in names))


@dataclass(frozen=True)
class StepInfo:
    """Where training stands after a step. ``loss`` and ``accuracy`` are the epoch's running
    means over every process as of the last logging interval (read from the device then, not
    at every step); ``videos_per_second`` counts every process."""

    epoch: int
    step: int
    steps_in_epoch: int
    loss: float
    accuracy: float
    videos_per_second: float
    lr: float


def training_step(
    model: nn.Module,
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp: str = "none",
    clip_grad: float = 0.0,
    weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One optimizer step of ``trained`` (``model`` under its DDP and compile wrappers) on
    ``batch`` (``inputs [B, N, D_in, H, W]``, ``times [B, N]``, ``label [B]``), the step
    ``datp train`` takes. Nothing here waits for the device: returns the batch's mean loss and
    its correct predictions as 0-dim tensors on ``device``, for the caller to read when it
    chooses. ``weight`` scales the loss (0: a step that contributes no gradient, for a process
    whose batch held only unreadable videos while the others step). With amp = "fp16" the
    GradScaler's inf check reads the device once per step (bf16 needs no scaler)."""
    labels = batch["label"].to(device, non_blocking=True)
    log_probs = forward_batch(trained, batch, device, amp).log_probs
    loss = nn.functional.nll_loss(log_probs, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss if weight == 1.0 else loss * weight).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    correct = (log_probs.detach().argmax(-1) == labels).sum()
    return loss.detach(), correct


class _Tally:
    """An epoch's running sums of training steps, kept on the device and read from it once per
    logging interval: ``add`` never waits for the device, ``read`` does (once, and under torchrun
    after one all-reduce over the processes).

    What is read: the loss and accuracy over every process since the epoch (or the resumed part
    of it) began, the videos, and whether a loss was NaN or infinite, with the first such step of
    this process.
    """

    def __init__(self, device: torch.device, *, step: int) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(4, dtype=dtype, device=device)
        """loss x videos, correct, videos, non-finite losses."""
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)
        """The step of this process's first non-finite loss (0: none)."""
        self.read_step = step
        """The step (in the epoch) up to which the sums are read."""
        self.step = step
        self.loss = self.accuracy = 0.0
        self.videos = 0

    def add(self, loss: Tensor, correct: Tensor, count: int, *, step: int) -> None:
        """Step ``step``'s (counted from 1 in the epoch, as :class:`StepInfo` counts) mean
        ``loss`` and ``correct`` predictions over ``count`` videos."""
        bad = ~torch.isfinite(loss)
        self.sums += torch.stack([loss.to(self.sums.dtype) * count,
                                  correct.to(self.sums.dtype),
                                  loss.new_full((), count, dtype=self.sums.dtype),
                                  bad.to(self.sums.dtype)])
        self.first_bad = torch.where(bad & (self.first_bad == 0), step, self.first_bad)
        self.step = step

    @property
    def unread(self) -> bool:
        return self.step > self.read_step

    def read(
        self, context: DistributedContext, *, collective: bool = True
    ) -> tuple[int, int] | None:
        """Read the sums (summed over every process when ``collective``: all of them must call
        it together). Returns None when every loss since the last read was finite, else the
        first step read now and the first step with a non-finite loss (this process's, or the
        last step if only another process had one)."""
        sums = all_reduce_sum(self.sums, context) if collective else self.sums
        # The one host read of the interval (named for the profiler, which sees no op in tolist).
        with torch.profiler.record_function(HOST_READ):
            loss_sum, correct, videos, bad, first = torch.cat(
                [sums, self.first_bad.to(sums.dtype).view(1)]
            ).tolist()
        since = self.read_step + 1
        self.read_step = self.step
        self.videos = int(videos)
        self.loss, self.accuracy = loss_sum / max(videos, 1), correct / max(videos, 1)
        if not bad:
            return None
        return since, int(first) if first else self.step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def train(
    config: Config,
    *,
    run_dir: Path,
    data: DataBundle,
    model: nn.Module,
    resume: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    on_evaluate: Callable[[int, int], None] | None = None,
    log_every: int = 10,
    stop_on: Sequence[int] = STOP_SIGNALS,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` as ``config`` says; returns the last evaluation's metrics.

    ``model`` maps ``(inputs [B, N, D_in, H, W], times [B, N])`` to an output with ``scores
    [B, C]``, ``weights [B, N]`` and ``log_probs [B, C]`` (a pooling's output, or a TSNOutput),
    and has a ``pooling`` attribute. ``resume``: True continues the run in
    ``run_dir``, ``"auto"`` continues it when it holds a checkpoint and starts one when it does
    not. ``on_step(StepInfo)`` is called after every training step (its loss and accuracy as
    read at the last logging point: every ``log_every`` steps and at the epoch's end, where a
    non-finite loss stops the run) and ``on_evaluate(done, total)`` as test videos are
    evaluated (the first process's share under torchrun). ``stop_on``: the signals that stop
    the run as Ctrl-C does. Raises ``NonFiniteLossError`` on a NaN loss, ``CheckpointError``
    when ``resume`` finds no run or a changed setting, ``RunFolderInUse`` when another process
    holds ``run_dir``, and ``KeyboardInterrupt`` (``TrainingStopped`` for a stop signal) after
    saving a checkpoint when interrupted.
    """
    run = _Run.prepare(config, run_dir=Path(run_dir), data=data, model=model, resume=resume,
                       stop_on=stop_on)
    try:
        run.interrupts.install()  # Ctrl-C and the stop signals wait for the step in progress
        if run.position.evaluation_pending:  # the run stopped during that evaluation
            run.evaluate(run.position.epoch, progress=on_evaluate)
            run.wait_for_all()
        for epoch in range(run.position.epoch + 1, run.plan.epochs):
            run.train_epoch(epoch, on_step=on_step, log_every=log_every)
            due = run.evaluation_due(epoch)
            run.save("last.pt", evaluation_pending=due)
            if due:
                run.evaluate(epoch, progress=on_evaluate)
            run.wait_for_all()
            if epoch < run.plan.epochs - 1:
                run.stop_if_asked()
    except KeyboardInterrupt:  # Ctrl-C or a stop signal: save where the run stands
        run.save_interrupted()
        raise
    finally:
        run.close()  # the signal handlers as they were, the run folder released
    return run.metrics


class DeferredInterrupt:
    """Ctrl-C and the stop signals inside a training step take effect when the step is done.

    A KeyboardInterrupt in the middle of a step (after the optimizer stepped, before the
    position moved on) would save a checkpoint whose parameters and position disagree, and the
    resumed run would apply that batch twice. Inside :meth:`deferred` the first Ctrl-C is noted
    and raised once the block ends; a second one breaks the step at once (and nothing is saved).
    Outside, Ctrl-C acts at once as usual.

    A stop signal (``stop_on``) does what a first Ctrl-C does but raises
    :class:`TrainingStopped`; a repeated stop signal changes nothing (Slurm signals every
    process of a job and torchrun's agent passes the signal on again, so one stop often arrives
    twice; the hard stop is the SIGKILL that follows). Under torchrun (``agree``) no signal
    raises: it is noted, and the processes stop together where :meth:`_Run.stop_if_asked`
    compares their requests. Loader workers forked from this process ignore the stop signals
    (they must feed the step in progress), as :func:`ignore_stop_signals` makes them at their
    start. Only the main thread can take signals; elsewhere this does nothing.
    """

    CTRL_C, STOP = 2, 1
    """Request levels, compared across processes (the larger wins)."""

    def __init__(self, stop_on: Sequence[int] = STOP_SIGNALS, *, agree: bool = False) -> None:
        self.stop_on = tuple(signal.Signals(s) for s in stop_on)
        for sig in self.stop_on:
            stop_signals(sig.name)  # refuses INT, KILL, CHLD, ...
        self.agree = agree
        self.request = 0
        self.signal_name = ""
        self.broke_a_step = False
        self._inside = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            for sig in (signal.SIGINT, *self.stop_on):
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        """The handlers as they were before :meth:`install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
        if self.request and not self.agree:
            raise self.exception(self.request)

    def exception(self, request: int) -> KeyboardInterrupt:
        if request == self.CTRL_C:
            return KeyboardInterrupt()
        return TrainingStopped(self.signal_name or "a stop signal to another process")

    def _on_signal(self, signum: int, frame: Any) -> None:
        ctrl_c = signum == signal.SIGINT
        if os.getpid() != self._pid:  # a loader worker that inherited the handler
            if ctrl_c:
                raise KeyboardInterrupt  # the worker ends quietly, as torch's loop expects
            return
        first = not self.request
        if first:
            self.signal_name = "Ctrl-C" if ctrl_c else signal.Signals(signum).name
        self.request = max(self.request, self.CTRL_C if ctrl_c else self.STOP)
        if self.agree:  # torchrun: the processes stop together, or the agent kills them
            if first:
                log.warning("%s: stopping with the other processes within %d steps",
                            self.signal_name, STOP_CHECK_EVERY)
            return
        if not ctrl_c and not first:
            return  # a repeated stop signal, or one while the first is being handled
        if self._inside and first:
            log.warning("%s: stopping after this step%s", self.signal_name,
                        " (again to stop at once)" if ctrl_c else "")
            return
        self.broke_a_step = self._inside
        raise self.exception(self.CTRL_C if ctrl_c else self.STOP)


def ignore_stop_signals(signals: Sequence[int], worker_id: int = 0) -> None:
    """A loader worker's ``worker_init_fn``: the stop signals are its parent's to handle (a
    cluster sends them to every process of a job)."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class _Run:
    """The state of one training run and the steps :func:`train` takes with it."""

    config: Config
    """Saved in every checkpoint; what the run follows is :attr:`plan`, built from it."""
    plan: TrainingPlan
    run_dir: Path
    data: DataBundle
    identity: RunIdentity
    """Classes, split fingerprint, world size, flow extraction: saved, compared on resume."""
    device: torch.device
    context: DistributedContext
    model: nn.Module
    trained: nn.Module
    """``model`` as it is stepped: wrapped by DistributedDataParallel and torch.compile."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    position: Position
    resumed_rng: dict[str, Any] | None
    sampler: EpochShardSampler
    items: SeededItems
    steps_per_epoch: int
    loader_generator: torch.Generator
    train_loader: DataLoader
    test_loader: DataLoader | None
    run_log: RunLog
    lock: RunFolderLock | None
    """The run folder's, held by the main process."""
    interrupts: DeferredInterrupt
    metrics: dict[str, Any] = field(default_factory=dict)
    """The last evaluation's."""
    warned_short: set[str] = field(default_factory=set)
    tally: _Tally | None = None
    """The unfinished epoch's step sums, on the device."""
    _blank: dict[str, Tensor] | None = None
    """Under torchrun, a batch of one clip of zeros (:meth:`_blank_batch`)."""

    # --- preparing and resuming -----------------------------------------------------------

    @classmethod
    def prepare(
        cls, config: Config, *, run_dir: Path, data: DataBundle, model: nn.Module,
        resume: bool | str, stop_on: Sequence[int],
    ) -> _Run:
        t = training_plan(config)
        device = resolve_device(t.device)
        context = init_distributed(device.type, timeout_minutes=t.distributed_timeout_minutes)
        device = process_device(device, context)
        sampler = EpochShardSampler(
            len(data.train), seed=t.seed, rank=context.rank, world_size=context.world_size
        )
        steps_per_epoch = _steps_per_epoch(t, shard=len(sampler), videos=len(data.train))
        identity = run_identity(config, data, world_size=context.world_size)
        interrupts = DeferredInterrupt(stop_on, agree=context.enabled)
        last = run_dir / "checkpoints" / "last.pt"
        lock = _hold(run_dir, context, device)
        try:
            state = open_run_folder(run_dir, config, identity=identity, resume=resume,
                                    context=context)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        barrier(context)

        model = _place(model, t, device)
        optimizer = make_optimizer(model, t.optimizer)
        scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
        position = Position()
        if state is not None:
            model.load_state_dict(state.model)
            optimizer.load_state_dict(state.optimizer)
            if state.scaler is not None:
                scaler.load_state_dict(state.scaler)
            position = state.position
            log.info("resuming %s after epoch %d, step %d", last, position.epoch,
                     position.step_in_epoch)

        trained = _wrapped(model, t, context, device)
        items, loader_generator, train_loader, test_loader = _loaders(
            t, data, sampler, context=context, device=device, ignore=interrupts.stop_on
        )
        return cls(
            config=config, plan=t, run_dir=run_dir, data=data, identity=identity, device=device,
            context=context, model=model, trained=trained, optimizer=optimizer, scaler=scaler,
            position=position, resumed_rng=state.rng if state is not None else None,
            sampler=sampler, items=items, steps_per_epoch=steps_per_epoch,
            loader_generator=loader_generator, train_loader=train_loader,
            test_loader=test_loader, run_log=RunLog(run_dir, enabled=context.is_main),
            lock=lock, interrupts=interrupts,
        )

    # --- one epoch ------------------------------------------------------------------------

    def train_epoch(
        self, epoch: int, *, on_step: Callable[[StepInfo], None] | None, log_every: int
    ) -> None:
        t = self.plan
        start = self.position.step_in_epoch if epoch == self.position.epoch + 1 else 0
        if start > 0:  # continue an interrupted epoch with the random state it had then
            restore_rng_states(self.resumed_rng)
        else:
            seed_everything(epoch_seed(t.seed, epoch))
        self.loader_generator.manual_seed(epoch_seed(t.seed, epoch))
        self.sampler.set_epoch(epoch, start=start * t.batch_size)
        self.items.set_epoch(epoch)
        self.model.train()
        if t.partial_bn and epoch > 0 and hasattr(self.model, "freeze_partial_bn"):
            self.model.freeze_partial_bn()

        step = start
        self.position.step_in_epoch = step
        self.tally = _Tally(self.device, step=step)
        tick, seen, skipped, factor = time.perf_counter(), 0, 0, 1.0
        for batch in decode_ahead(self.train_loader, self.device):  # CUDA: decoded a batch ahead
            if step >= self.steps_per_epoch:
                break
            with self.interrupts.deferred():  # a signal in here stops after the step, not inside
                factor = t.schedule.factor(self.position.global_step, self.steps_per_epoch)
                skipped += len(batch.get("skipped", ()))
                seen += self._step(batch, factor, step=step + 1)
                step += 1
                self.position.step_in_epoch = step
                self.position.global_step += 1
            logged = step % log_every == 0 or step == self.steps_per_epoch
            if logged:  # the interval's one read of the device; stops on a non-finite loss
                self._read_tally(epoch)
            info = self._step_info(epoch, step, seen, tick, lr=t.optimizer.lr * factor)
            if on_step is not None and self.context.is_main:
                on_step(info)
            if logged:
                self.run_log.write({"kind": "train", **asdict(info)}, self.position.global_step)
            if step % STOP_CHECK_EVERY == 0 and step < self.steps_per_epoch:
                self.stop_if_asked()
        if self.tally.unread:  # the loader ended early
            self._read_tally(epoch)
        if skipped:
            log.warning("epoch %d: %d unreadable training videos skipped", epoch, skipped)
        self.run_log.write(
            {"kind": "epoch", "epoch": epoch, "videos": self.tally.videos,
             "skipped_videos": skipped},
            self.position.global_step,
        )
        self.position = Position(
            epoch=epoch, step_in_epoch=0, global_step=self.position.global_step,
            best_metric=self.position.best_metric,
        )

    def _step(self, batch: dict[str, Any], factor: float, *, step: int) -> int:
        """One optimizer step on ``batch``, its sums left on the device; returns its videos.

        Under torchrun every process steps (the gradient all-reduce needs all of them): one
        whose batch held only unreadable videos steps on a blank clip with a loss of weight 0,
        so that no process has to ask the others at every step whether they have a batch."""
        t = self.plan
        set_learning_rate(self.optimizer, t.optimizer.lr * factor)
        if "inputs" not in batch:
            if self.context.enabled:
                with _statistics_kept(self.trained):  # zeros must not enter BatchNorm's means
                    training_step(self.model, self.trained, self.optimizer, self.scaler,
                                  self._blank_batch(), self.device, amp=t.amp,
                                  clip_grad=t.clip_grad, weight=0.0)
            return 0
        self._warn_short_videos(batch)
        if self.context.enabled and self._blank is None:
            self._blank = _first_clip(batch)
        loss, correct = training_step(self.model, self.trained, self.optimizer, self.scaler,
                                      batch, self.device, amp=t.amp, clip_grad=t.clip_grad)
        count = int(batch["label"].shape[0])
        self.tally.add(loss, correct, count, step=step)
        return count

    def _blank_batch(self) -> dict[str, Any]:
        """A batch of one clip of zeros, shaped like the first clip this process read (or,
        before it has read one, like the first readable video of the split)."""
        if self._blank is None:
            collate = self.data.collate or torch.utils.data.default_collate
            for index in range(len(self.items)):
                batch = collate([self.items[index]])
                if "inputs" in batch:
                    self._blank = _first_clip(batch)
                    break
            else:
                raise InputError("no video of the training split can be read")
        return self._blank

    def _read_tally(self, epoch: int, *, collective: bool = True) -> None:
        """Read the step sums; raise NonFiniteLossError if a loss since the last read was NaN
        or infinite. Runs at every logging interval and before every checkpoint is saved, so
        no parameters stepped with such a loss are ever saved."""
        found = self.tally.read(self.context, collective=collective)
        if found is None:
            return
        since, first = found
        lr = base_learning_rate(self.optimizer)
        raise NonFiniteLossError(
            f"the loss became NaN or infinite in epoch {epoch} between steps {since} and "
            f"{self.tally.step} (first at step {first}, lr {lr:.3g}); nothing was saved after "
            f"it, the last good checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}. "
            "Lower train.lr, enable train.clip_grad, or use train.amp=none."
        )

    def _step_info(self, epoch: int, step: int, seen: int, tick: float, *, lr: float) -> StepInfo:
        return StepInfo(
            epoch=epoch, step=step, steps_in_epoch=self.steps_per_epoch,
            loss=self.tally.loss, accuracy=self.tally.accuracy,
            videos_per_second=seen * self.context.world_size
            / max(time.perf_counter() - tick, 1e-9),
            lr=lr,
        )

    def _warn_short_videos(self, batch: dict[str, Any]) -> None:
        """Say once per video that it is too short for its N segments (frames repeat)."""
        if "num_frames" not in batch or "video" not in batch:
            return
        t = self.plan
        length = t.flow_length
        for video, frames in zip(batch["video"], batch["num_frames"].tolist(), strict=True):
            if video in self.warned_short:
                continue
            warning = short_video_warning(video, frames, segments=t.segments, length=length,
                                          flow=t.modality == "flow")
            if warning is not None:
                self.warned_short.add(video)
                log.warning("%s", warning)

    # --- saving and evaluating ------------------------------------------------------------

    def evaluation_due(self, epoch: int) -> bool:
        t = self.plan
        last_epoch = epoch == t.epochs - 1
        return self.test_loader is not None and (
            last_epoch or bool(t.eval_every and (epoch + 1) % t.eval_every == 0)
        )

    def evaluate(self, epoch: int, *, progress: Callable[[int, int], None] | None) -> None:
        """Evaluate the finished ``epoch``, every process its shard of the test split, the
        results gathered on each; keep best.pt, then mark last.pt evaluated."""
        if self.test_loader is None:
            return
        collected = collect_sharded(
            self.model, self.test_loader, self.device, self.plan.amp, self.context,
            progress=progress if self.context.is_main else None,
        )
        metrics = {
            "kind": "eval",
            "epoch": epoch,
            "step": self.position.global_step,
            **evaluation_metrics(collected.log_probs, collected.labels,
                                 videos=len(collected.videos),
                                 skipped_videos=len(collected.skipped)),
        }
        if collected.skipped:
            log.warning("epoch %d: %d unreadable test videos left out of the metrics, e.g. %s",
                        epoch, len(collected.skipped), collected.skipped[0])
        self.run_log.write(metrics, self.position.global_step)
        log.info("epoch %d: %s", epoch, _format(metrics))
        self.metrics = metrics
        if metrics["top1"] > self.position.best_metric:
            self.position.best_metric = metrics["top1"]
            self.save("best.pt", evaluation_pending=False)
        self.save("last.pt", evaluation_pending=False)

    def save(self, name: str, *, evaluation_pending: bool) -> None:
        """Only the main process writes; the others meet it at :meth:`wait_for_all`. Every
        process first checks the parameters (one read of the device a save, alike on every
        rank): a gradient can overflow with a finite loss, which no read of the losses sees."""
        self.position.evaluation_pending = evaluation_pending
        if not _finite(self.model):
            raise NonFiniteLossError(
                f"the parameters are NaN or infinite at the end of epoch {self.position.epoch} "
                f"(the losses were finite: a gradient overflowed); nothing was saved, the last "
                f"good checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}. Lower "
                "train.lr, enable train.clip_grad, or use train.amp=none."
            )
        if self.context.is_main:
            self._snapshot().save(self.run_dir / "checkpoints" / name)

    def wait_for_all(self) -> None:
        """Every process waits here for the main one to finish saving and evaluating."""
        barrier(self.context)

    def stop_if_asked(self) -> None:
        """Under torchrun, every process stops here if any of them was asked to (one
        all-reduce); a single process has stopped already, at the end of the step the signal
        came in."""
        if self.interrupts.agree:
            request = largest(self.interrupts.request, self.context, self.device)
            if request:
                raise self.interrupts.exception(request)

    def save_interrupted(self) -> None:
        """On Ctrl-C or a stop signal inside an epoch: its position, to continue from with
        ``--resume`` (after a second Ctrl-C inside a step, nothing: it broke that step); never
        parameters that a non-finite loss stepped (this process's losses since the last read are
        checked, and the parameters themselves, which under torchrun carry any other process's
        non-finite gradients)."""
        path = self.run_dir / "checkpoints" / "last.pt"
        if self.interrupts.broke_a_step:
            log.warning("interrupted twice inside a step; %s is left as it was", path)
            return
        if self.context.is_main and 0 < self.position.step_in_epoch <= self.steps_per_epoch:
            if self.tally is not None and self.tally.unread:
                self._read_tally(self.position.epoch + 1, collective=False)
            if not _finite(self.model):
                raise NonFiniteLossError(
                    f"the parameters are NaN or infinite at epoch {self.position.epoch + 1} step "
                    f"{self.position.step_in_epoch}; nothing was saved, the last good checkpoint "
                    f"is {path}"
                )
            self._snapshot().save(path)
            what = ("interrupted" if self.interrupts.signal_name in ("", "Ctrl-C")
                    else f"stopped by {self.interrupts.signal_name}")
            log.warning("%s at epoch %d step %d; saved %s; continue with --resume", what,
                        self.position.epoch + 1, self.position.step_in_epoch, path)

    def _snapshot(self) -> RunState:
        return RunState.of_training(
            model=self.model, optimizer=self.optimizer, scaler=self.scaler,
            position=self.position, config=self.config, identity=self.identity,
        )

    def close(self) -> None:
        self.interrupts.restore()
        self.run_log.close()
        if self.lock is not None:
            self.lock.release()
        shutdown(self.context)


def _steps_per_epoch(plan: TrainingPlan, *, shard: int, videos: int) -> int:
    """Steps in an epoch of ``shard`` videos (this process's share of the ``videos`` of the
    training split); refuses a split smaller than one batch per process."""
    steps = shard // plan.batch_size
    if steps < 1:  # refused before the run folder is made
        raise InputError(
            f"the training split has {videos} videos, fewer than one batch of "
            f"{plan.batch_size} per process; lower train.batch_size"
        )
    if plan.max_steps_per_epoch:
        steps = min(steps, plan.max_steps_per_epoch)
    return steps


def _place(model: nn.Module, plan: TrainingPlan, device: torch.device) -> nn.Module:
    model = model.to(device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _wrapped(
    model: nn.Module, plan: TrainingPlan, context: DistributedContext, device: torch.device
) -> nn.Module:
    """``model`` as it is stepped: under DistributedDataParallel (torchrun), compiled."""
    trained: nn.Module = model
    if context.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if plan.compile:
        trained = torch.compile(trained)
    return trained


def _loaders(
    plan: TrainingPlan, data: DataBundle, sampler: EpochShardSampler, *,
    context: DistributedContext, device: torch.device, ignore: Sequence[int],
) -> tuple[SeededItems, torch.Generator, DataLoader, DataLoader | None]:
    """The training items (seeded per item), the generator the training loader draws its
    randomness from (seeded at every epoch), the training loader (in ``sampler``'s order) and
    the test loader (this process's shard); their workers ignore the signals ``ignore``."""
    items = SeededItems(data.train, seed=plan.seed)
    generator = torch.Generator()
    worker_init = functools.partial(ignore_stop_signals, ignore)
    train_loader = DataLoader(
        items, batch_size=plan.batch_size, sampler=sampler,
        num_workers=plan.workers, collate_fn=data.collate, drop_last=True,
        pin_memory=device.type == "cuda", generator=generator,
        persistent_workers=False, worker_init_fn=worker_init,
    )
    test_loader = None
    if data.test is not None:  # every process evaluates its shard of the test split
        test_loader = DataLoader(
            shard(data.test, context), batch_size=plan.test_batch_size, shuffle=False,
            num_workers=plan.workers, collate_fn=data.collate,
            pin_memory=device.type == "cuda", worker_init_fn=worker_init,
        )
    return items, generator, train_loader, test_loader


def _hold(run_dir: Path, context: DistributedContext, device: torch.device) -> RunFolderLock | None:
    """The run folder's lock, taken by the main process; under torchrun every process refuses
    when it is held by another run."""
    lock, refusal = None, None
    if context.is_main:
        try:
            lock = RunFolderLock.take(run_dir)
        except UserError as error:
            refusal = error
    if largest(int(refusal is not None), context, device):
        raise refusal or InputError(f"{run_dir}: the main process could not hold it")
    return lock


@contextlib.contextmanager
def _statistics_kept(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics unchanged by the forward passes inside (momentum 0)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum


def _first_clip(batch: dict[str, Any]) -> dict[str, Tensor]:
    """A batch of one clip of zeros shaped like ``batch``'s (copies: the batch is not kept)."""
    inputs = batch["inputs"]
    if isinstance(inputs, EncodedBatch):  # data.decode = "device": its shape once decoded
        inputs = decode_batch(inputs, torch.device("cpu"))
    return {"inputs": torch.zeros_like(inputs[:1]),
            "times": batch["times"][:1].clone(), "label": batch["label"][:1].clone()}


def _finite(model: nn.Module) -> bool:
    """Whether every parameter is finite (one read of the device)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if isinstance(v, float))
