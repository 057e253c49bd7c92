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
    raises: it is noted, and the processes stop together where the training loop
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
