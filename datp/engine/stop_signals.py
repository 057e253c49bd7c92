"""Stopping a training run cleanly: Ctrl-C and the stop signals a cluster sends take effect when
the training step in progress is done, and the run saves where it stands.

Slurm (preemption, ``scancel``, the time limit), Kubernetes and torchrun's agent send SIGTERM before
they kill a job, and ``sbatch --signal=USR1@120`` sends SIGUSR1 ahead of the time limit; both stop a
run by default (:data:`STOP_SIGNALS`). A stop raises :class:`TrainingStopped` once the step is
done; ``datp train`` saves ``last.pt`` and exits 75, and ``--resume`` continues the run. Under
torchrun every process stops after the same step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from datp.errors import InputError

log = logging.getLogger(__name__)


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


class DeferredInterrupt:
    """Ctrl-C and the stop signals take effect where the training loop can stop cleanly.

    The handler never raises where the signal happens to land: a KeyboardInterrupt in the middle
    of a step (after the optimizer stepped, before the position moved on) would save parameters
    and a position that disagree, and one raised while the loader forks its workers or builds
    its iterator leaves a half-made iterator whose clean-up prints a traceback (seen in 2 of 20
    tries of SIGUSR1 to a job's every process). The first Ctrl-C or stop signal is noted; the
    loop raises it at its next safe point (:meth:`check`: before a step, after each evaluation
    batch) or when the block it is in ends (:meth:`deferred`: a step, a checkpoint being
    written). A second Ctrl-C raises at once (and, inside a block, nothing is saved after it).

    A stop signal (``stop_on``) raises :class:`TrainingStopped` where Ctrl-C raises
    KeyboardInterrupt; a repeated stop signal changes nothing (Slurm signals every process of a
    job and torchrun's agent passes the signal on again, so one stop often arrives twice; the
    hard stop is the SIGKILL that follows). Under torchrun (``agree``) nothing raises here: the
    processes stop together where the training loop compares their requests. Loader workers
    forked from this process ignore the stop signals (they must feed the step in progress), as
    :func:`ignore_stop_signals` makes them at their start. Only the main thread can take
    signals; elsewhere this does nothing.
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
        """A second Ctrl-C broke a step or a save: nothing is saved after it."""
        self._what = "this step"
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
    def deferred(self, what: str = "this step", *, then_stop: bool = True) -> Iterator[None]:
        """Inside, Ctrl-C and the stop signals wait for the block (``what``: "this step", "the
        checkpoint is written") to end: the first is noted, logged, and raised when the block
        ends (unless ``then_stop`` is false: the caller is stopping already); a second Ctrl-C
        breaks the block at once."""
        self._inside, self._what = True, what
        try:
            yield
        finally:
            self._inside = False
        if then_stop:
            self.check()

    def check(self) -> None:
        """Raise the request noted (not under torchrun, where the loop compares them)."""
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
        if first:
            log.warning("%s: stopping after %s%s", self.signal_name,
                        self._what if self._inside else "the step in progress",
                        " (again to stop at once)" if ctrl_c else "")
            return
        self.broke_a_step = self._inside  # a second Ctrl-C: at once
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_at_once(signals: Sequence[int]) -> Iterator[None]:
    """Before a run has anything to save (its data and model being built), a stop signal ends it
    at once with :class:`TrainingStopped` (``datp train`` exits 75, as a scheduler expects),
    rather than by the signal's default action. :func:`datp.engine.train.train` installs its
    own handlers inside and restores these."""
    def stop(signum: int, frame: Any) -> None:
        raise TrainingStopped(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(signals: Sequence[int], worker_id: int = 0) -> None:
    """A loader worker's ``worker_init_fn``: the stop signals are its parent's to handle (a
    cluster sends them to every process of a job)."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)
