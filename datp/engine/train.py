"""Training of one stream: a TSN segment network with its temporal pooling, video-level labels only.

Dimension key: B videos, N segments, D_in input channels, H, W image size, C classes.

:func:`train` takes a :class:`TrainingRun`, built whole before it starts
(``datp.engine.build.training_run``), and reads top to bottom: prepare the run folder
(:mod:`datp.engine.run_folder`), resume, then for every epoch train it, save it, evaluate it.
Checkpoints go to ``checkpoints/last.pt`` (after every epoch, before its evaluation, and on
Ctrl-C or a stop signal) and
``checkpoints/best.pt`` (best test top-1). The run folder is held by one process at a time
(:class:`datp.engine.run_folder.RunFolderLock`).

What survives what:

- an epoch's checkpoint is written before the epoch is evaluated, so a test video that kills the
  evaluation loses no training; resuming runs the evaluation that was due first;
- Ctrl-C saves the unfinished epoch's position, and resuming from it (or from the end of an
  epoch) reproduces the uninterrupted run exactly: randomness is reseeded from (seed, epoch) at
  every epoch start and the data order depends only on them;
- a stop signal (SIGTERM and SIGUSR1 by default: what Slurm, Kubernetes and torchrun send before
  they kill a job) acts like Ctrl-C and raises ``TrainingStopped``
  (:mod:`datp.engine.stop_signals`); under torchrun every process stops after the same step;
- a NaN loss stops the run and leaves the last good checkpoint as it was: a step never waits
  for the device (loss, accuracy and the finite-loss check stay there,
  :class:`datp.engine.step.Tally`), so the
  check runs once per logging interval and before every save, and names the steps it covers;
- a checkpoint that cannot be written (a full disk) is an error naming the file, and the
  previous checkpoint stays intact (``datp.checkpoint.save_checkpoint``);
- resuming refuses any change of setting that alters what is learned (``datp.engine.resume``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from datp.checkpoint import restore_rng_states
from datp.config import TrainConfig
from datp.data.build import DataBundle
from datp.data.device_decode import decode_ahead
from datp.distributed import EpochShardSampler, barrier, largest, shutdown
from datp.engine import placement
from datp.engine.inference import collect_sharded
from datp.engine.optimizer import OptimizerSettings, Schedule, base_learning_rate, set_learning_rate
from datp.engine.run_folder import RunFolderLock, RunLog, open_run_folder
from datp.engine.step import (
    StepInfo,
    Tally,
    all_finite,
    blank_batch,
    epoch_seed,
    first_clip,
    seed_everything,
    statistics_kept,
    training_step,
)
from datp.engine.stop_signals import STOP_CHECK_EVERY, STOP_SIGNALS, DeferredInterrupt
from datp.errors import UserError
from datp.run_state import Position, RunIdentity, RunState
from datp.scoring import evaluation_metrics

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass(frozen=True)
class TrainingRun:
    """Everything a training run needs, built before it starts
    (``datp.engine.build.training_run``): nothing here reads a config file again."""

    run_dir: Path
    settings: TrainConfig
    """The ``[train]`` section: epochs, batch, device, precision, seed, evaluation."""
    data: DataBundle
    model: nn.Module
    """Maps ``(inputs [B, N, D_in, H, W], times [B, N])`` to an output with ``scores [B, C]``,
    ``weights [B, N]`` and ``log_probs [B, C]``, and has a ``pooling`` attribute."""
    optimizer: OptimizerSettings
    schedule: Schedule
    identity: RunIdentity
    """Classes, training split, flow extraction; the world size is set when the run starts."""
    config: dict[str, Any]
    """The resolved config (nested dicts): config.toml and every checkpoint keep it."""
    resume: bool | str = False
    """True continues the run in ``run_dir``; "auto" continues it when it holds a checkpoint."""


def train(
    run: TrainingRun,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    on_evaluate: Callable[[int, int], None] | None = None,
    log_every: int = 10,
    stop_on: Sequence[int] = STOP_SIGNALS,
) -> dict[str, Any]:
    """Train ``run.model`` on ``run.data`` as ``run.settings`` say; returns the last
    evaluation's metrics.

    ``on_step(StepInfo)`` is called after every training step (its loss and accuracy as read at
    the last logging point: every ``log_every`` steps and at the epoch's end, where a non-finite
    loss stops the run) and ``on_evaluate(done, total)`` as test videos are evaluated (the first
    process's share under torchrun). ``stop_on``: the signals that stop the run as Ctrl-C does.
    Raises ``NonFiniteLossError`` on a NaN loss, ``CheckpointError`` when ``run.resume`` finds
    no run or a changed setting, ``RunFolderInUse`` when another process holds ``run.run_dir``,
    and ``KeyboardInterrupt`` (``TrainingStopped`` for a stop signal) after saving a checkpoint
    when interrupted.
    """
    state = _Run.prepare(run, stop_on=stop_on)
    epochs = run.settings.epochs
    try:
        state.interrupts.install()  # Ctrl-C and the stop signals wait for the step in progress
        if state.position.evaluation_pending:  # the run stopped during that evaluation
            state.evaluate(state.position.epoch, progress=on_evaluate)
            state.wait_for_all()
        for epoch in range(state.position.epoch + 1, epochs):
            state.train_epoch(epoch, on_step=on_step, log_every=log_every)
            due = state.evaluation_due(epoch)
            state.save("last.pt", evaluation_pending=due)
            if due:
                state.evaluate(epoch, progress=on_evaluate)
            state.wait_for_all()
            if epoch < epochs - 1:
                state.stop_if_asked()
    except KeyboardInterrupt:  # Ctrl-C or a stop signal: save where the run stands
        state.save_interrupted()
        raise
    finally:
        state.close()  # the signal handlers as they were, the run folder released
    return state.metrics


@dataclass
class _Run:
    """The state of one training run and the steps :func:`train` takes with it."""

    run: TrainingRun
    identity: RunIdentity
    """The run's, with its world size: saved, compared on resume."""
    placed: placement.Placed
    loaders: placement.Loaders
    position: Position
    resumed_rng: dict[str, Any] | None
    run_log: RunLog
    lock: RunFolderLock | None
    """The run folder's, held by the main process."""
    interrupts: DeferredInterrupt
    metrics: dict[str, Any] = field(default_factory=dict)
    """The last evaluation's."""
    warned_short: set[str] = field(default_factory=set)
    tally: Tally | None = None
    """The unfinished epoch's step sums, on the device."""
    blank: dict[str, Tensor] | None = None
    """Under torchrun, a batch of one clip of zeros (:meth:`_blank_batch`)."""

    # --- preparing and resuming -----------------------------------------------------------

    @classmethod
    def prepare(cls, run: TrainingRun, *, stop_on: Sequence[int]) -> _Run:
        t = run.settings
        device, context = placement.start_process(t)
        sampler = EpochShardSampler(
            len(run.data.train), seed=t.seed, rank=context.rank, world_size=context.world_size
        )
        steps = placement.steps_per_epoch(t, shard=len(sampler), videos=len(run.data.train))
        identity = replace(run.identity, world_size=context.world_size)
        interrupts = DeferredInterrupt(stop_on, agree=context.enabled)
        lock = placement.hold(run.run_dir, context, device)
        try:
            state = open_run_folder(run.run_dir, run.config, identity=identity,
                                    resume=run.resume, context=context)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        barrier(context)
        placed = placement.place(run.model, t, run.optimizer, device=device, context=context)
        position = Position()
        if state is not None:
            placed.load(state)
            position = state.position
            log.info("resuming %s after epoch %d, step %d", run.run_dir / "checkpoints" /
                     "last.pt", position.epoch, position.step_in_epoch)
        placed.trained = placement.wrapped(placed.model, t, context, device)
        loaders = placement.open_loaders(run.data, t, sampler, steps, context=context,
                                         device=device, ignore=interrupts.stop_on)
        return cls(run=run, identity=identity, placed=placed, loaders=loaders, position=position,
                   resumed_rng=state.rng if state is not None else None,
                   run_log=RunLog(run.run_dir, enabled=context.is_main), lock=lock,
                   interrupts=interrupts)

    # --- one epoch ------------------------------------------------------------------------

    def train_epoch(
        self, epoch: int, *, on_step: Callable[[StepInfo], None] | None, log_every: int
    ) -> None:
        t, loaders = self.run.settings, self.loaders
        start = self.position.step_in_epoch if epoch == self.position.epoch + 1 else 0
        if start > 0:  # continue an interrupted epoch with the random state it had then
            restore_rng_states(self.resumed_rng)
        else:
            seed_everything(epoch_seed(t.seed, epoch))
        loaders.generator.manual_seed(epoch_seed(t.seed, epoch))
        loaders.sampler.set_epoch(epoch, start=start * t.batch_size)
        loaders.items.set_epoch(epoch)  # for the keys read in this process (a blank batch)
        model = self.placed.model
        model.train()
        if epoch > 0 and getattr(model, "partial_bn", False):
            model.freeze_partial_bn()

        step = start
        self.position.step_in_epoch = step
        self.tally = Tally(self.placed.device, step=step)
        tick, seen, skipped, factor = time.perf_counter(), 0, 0, 1.0
        for batch in decode_ahead(loaders.train, self.placed.device):  # CUDA: a batch ahead
            if step >= loaders.steps_per_epoch:
                break
            self.interrupts.check()  # a stop noted while the batch was loading: before stepping
            with self.interrupts.deferred():  # a signal in here stops after the step, not inside
                factor = self.run.schedule.factor(self.position.global_step,
                                                  loaders.steps_per_epoch)
                skipped += len(batch.get("skipped", ()))
                seen += self._step(batch, factor, step=step + 1)
                step += 1
                self.position.step_in_epoch = step
                self.position.global_step += 1
            logged = step % log_every == 0 or step == loaders.steps_per_epoch
            if logged:  # the interval's one read of the device; stops on a non-finite loss
                self._read_tally(epoch)
            info = self._step_info(epoch, step, seen, tick, lr=self.run.optimizer.lr * factor)
            if on_step is not None and self.placed.context.is_main:
                on_step(info)
            if logged:
                self.run_log.write({"kind": "train", **asdict(info)}, self.position.global_step)
            if step % STOP_CHECK_EVERY == 0 and step < loaders.steps_per_epoch:
                self.stop_if_asked()
        self._end_epoch(epoch, skipped)

    def _end_epoch(self, epoch: int, skipped: int) -> None:
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
        t, p = self.run.settings, self.placed
        set_learning_rate(p.optimizer, self.run.optimizer.lr * factor)
        if "inputs" not in batch:
            if p.context.enabled:
                with statistics_kept(p.trained):  # zeros must not enter BatchNorm's means
                    training_step(p.model, p.trained, p.optimizer, p.scaler, self._blank_batch(),
                                  p.device, amp=t.amp, clip_grad=t.clip_grad, weight=0.0)
            return 0
        self._warn_short_videos(batch)
        if p.context.enabled and self.blank is None:
            self.blank = first_clip(batch)
        loss, correct = training_step(p.model, p.trained, p.optimizer, p.scaler, batch,
                                      p.device, amp=t.amp, clip_grad=t.clip_grad)
        count = int(batch["label"].shape[0])
        self.tally.add(loss, correct, count, step=step)
        return count

    def _blank_batch(self) -> dict[str, Any]:
        """A batch of one clip of zeros, shaped like the first clip this process read (or,
        before it has read one, like the first readable video of the split)."""
        if self.blank is None:
            self.blank = blank_batch(self.loaders.items, self.run.data.collate)
        return self.blank

    def _read_tally(self, epoch: int, *, collective: bool = True) -> None:
        """Read the step sums; raise NonFiniteLossError if a loss since the last read was NaN
        or infinite. Runs at every logging interval and before every checkpoint is saved, so
        no parameters stepped with such a loss are ever saved."""
        found = self.tally.read(self.placed.context, collective=collective)
        if found is None:
            return
        since, first = found
        lr = base_learning_rate(self.placed.optimizer)
        raise NonFiniteLossError(
            f"the loss became NaN or infinite in epoch {epoch} between steps {since} and "
            f"{self.tally.step} (first at step {first}, lr {lr:.3g}); nothing was saved after "
            f"it, the last good checkpoint is {self._path('last.pt')}. "
            "Lower train.lr, enable train.clip_grad, or use train.amp=none."
        )

    def _step_info(self, epoch: int, step: int, seen: int, tick: float, *, lr: float) -> StepInfo:
        return StepInfo(
            epoch=epoch, step=step, steps_in_epoch=self.loaders.steps_per_epoch,
            loss=self.tally.loss, accuracy=self.tally.accuracy,
            videos_per_second=seen * self.placed.context.world_size
            / max(time.perf_counter() - tick, 1e-9),
            lr=lr,
        )

    def _warn_short_videos(self, batch: dict[str, Any]) -> None:
        """Say once per video that it is too short for its N segments (frames repeat)."""
        rule = self.run.data.short_video
        if rule is None or "num_frames" not in batch or "video" not in batch:
            return
        for video, frames in zip(batch["video"], batch["num_frames"].tolist(), strict=True):
            if video in self.warned_short:
                continue
            warning = rule(video, frames)
            if warning is not None:
                self.warned_short.add(video)
                log.warning("%s", warning)

    # --- saving and evaluating ------------------------------------------------------------

    def evaluation_due(self, epoch: int) -> bool:
        t = self.run.settings
        last_epoch = epoch == t.epochs - 1
        return self.loaders.test is not None and (
            last_epoch or bool(t.eval_every and (epoch + 1) % t.eval_every == 0)
        )

    def evaluate(self, epoch: int, *, progress: Callable[[int, int], None] | None) -> None:
        """Evaluate the finished ``epoch``, every process its shard of the test split, the
        results gathered on each; keep best.pt, then mark last.pt evaluated."""
        if self.loaders.test is None:
            return
        p = self.placed
        shown = progress if p.context.is_main else None

        def checked(done: int, total: int) -> None:  # after each batch: a safe point to stop
            if shown is not None:
                shown(done, total)
            self.interrupts.check()

        collected = collect_sharded(p.model, self.loaders.test, p.device, self.run.settings.amp,
                                    p.context, progress=checked)
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
        rank): a gradient can overflow with a finite loss, which no read of the losses sees. A
        stop request that comes while the checkpoint is written lets the write finish: the run
        stops right after it, at the position it saved."""
        self.position.evaluation_pending = evaluation_pending
        with self.interrupts.deferred("the checkpoint is written"):
            if not all_finite(self.placed.model):
                raise NonFiniteLossError(
                    f"the parameters are NaN or infinite at the end of epoch "
                    f"{self.position.epoch} (the losses were finite: a gradient overflowed); "
                    f"nothing was saved, the last good checkpoint is {self._path('last.pt')}. "
                    "Lower train.lr, enable train.clip_grad, or use train.amp=none."
                )
            if self.placed.context.is_main:
                self._snapshot().save(self._path(name))

    def wait_for_all(self) -> None:
        """Every process waits here for the main one to finish saving and evaluating."""
        barrier(self.placed.context)

    def stop_if_asked(self) -> None:
        """Under torchrun, every process stops here if any of them was asked to (one
        all-reduce); a single process has stopped already, at the end of the step the signal
        came in."""
        if self.interrupts.agree:
            request = largest(self.interrupts.request, self.placed.context, self.placed.device)
            if request:
                raise self.interrupts.exception(request)

    def save_interrupted(self) -> None:
        """On Ctrl-C or a stop signal inside an epoch: its position, to continue from with
        ``--resume`` (after a second Ctrl-C inside a step, nothing: it broke that step); never
        parameters that a non-finite loss stepped (this process's losses since the last read are
        checked, and the parameters themselves, which under torchrun carry any other process's
        non-finite gradients)."""
        path = self._path("last.pt")
        if self.interrupts.broke_a_step:
            log.warning("interrupted twice inside a step or a save; %s is left as it was", path)
            return
        steps = self.loaders.steps_per_epoch
        if self.placed.context.is_main and 0 < self.position.step_in_epoch <= steps:
            if self.tally is not None and self.tally.unread:
                self._read_tally(self.position.epoch + 1, collective=False)
            with self.interrupts.deferred("the checkpoint is written", then_stop=False):
                if not all_finite(self.placed.model):
                    raise NonFiniteLossError(
                        f"the parameters are NaN or infinite at epoch {self.position.epoch + 1} "
                        f"step {self.position.step_in_epoch}; nothing was saved, the last good "
                        f"checkpoint is {path}"
                    )
                self._snapshot().save(path)
            what = ("interrupted" if self.interrupts.signal_name in ("", "Ctrl-C")
                    else f"stopped by {self.interrupts.signal_name}")
            log.warning("%s at epoch %d step %d; saved %s; continue with --resume", what,
                        self.position.epoch + 1, self.position.step_in_epoch, path)

    def _path(self, name: str) -> Path:
        return self.run.run_dir / "checkpoints" / name

    def _snapshot(self) -> RunState:
        p = self.placed
        return RunState.of_training(model=p.model, optimizer=p.optimizer, scaler=p.scaler,
                                    position=self.position, config=self.run.config,
                                    identity=self.identity)

    def close(self) -> None:
        self.interrupts.restore()
        self.run_log.close()
        if self.lock is not None:
            self.lock.release()
        shutdown(self.placed.context)


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if isinstance(v, float))
