"""Progress of long work, as the command line shows it: a bar on a terminal, sparse lines in a log.

Library functions report progress through a plain callback ``progress(done, total)`` and never
draw anything; the commands turn that into a :class:`Progress`. On a terminal it is a tqdm bar;
when stderr is not a terminal (a log file, CI, ``nohup``) a bar's carriage returns would flood the
log, so it writes one line every ``every_fraction`` of the total or ``every_seconds``, whichever
comes first, and one at the end.

A rate (units per second) is shown only once it rests on :data:`RATE_MIN_SECONDS` of work and
on units done after the first count reported: that count often arrives a moment after the bar
was made (a bar opened by the first step's callback, a resumed run's count), and dividing it by
that moment gave rates like "5718.2 step/s".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

RATE_MIN_SECONDS = 1.0
"""A rate is shown once it is measured over at least this long."""


class Progress:
    """``with Progress(total, desc="evaluate", unit="video") as bar: bar.update(1, loss=0.3)``."""

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "it",
        stream: TextIO | None = None,
        enabled: bool = True,
        every_fraction: float = 0.05,
        every_seconds: float = 30.0,
        leave: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.done = 0
        self.postfix: dict[str, Any] = {}
        self._clock = clock
        self._started = clock()
        self._last_line_at = self._started
        self._last_line_done = 0
        self._rate_from: tuple[float, int] | None = None
        """(time, done) of the first count reported: where the rate is measured from."""
        self._bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=leave,
                             dynamic_ncols=True)

    def update(self, n: int = 1, /, **postfix: Any) -> None:
        """``n`` more units done; ``postfix`` values are shown beside the count."""
        self.set(self.done + n, **postfix)

    def set(self, done: int, /, **postfix: Any) -> None:
        """``done`` units done in all (for callbacks that report a running count)."""
        step = done - self.done
        self.done = done
        self.postfix.update(postfix)
        if not self.enabled:
            return
        first = self._rate_from is None
        if first:
            self._rate_from = (self._clock(), done)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: _short(v) for k, v in self.postfix.items()},
                                      refresh=False)
            if first:  # the bar's count starts here: its rate is measured from this count on
                self._bar.reset(total=self.total)
                self._bar.initial = self._bar.n = self._bar.last_print_n = done
                self._bar.refresh()
            else:
                self._bar.update(step)
            return
        now = self._clock()
        due_by_count = (
            self.total is not None
            and self.total > 0
            and done - self._last_line_done >= max(1, round(self.every_fraction * self.total))
        )
        if due_by_count or now - self._last_line_at >= self.every_seconds:
            self._line(now)

    def callback(self, done: int, total: int) -> None:
        """A ``progress(done, total)`` callback for library functions."""
        if total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        self.set(done)

    def write(self, text: str, *, file: TextIO | None = None) -> None:
        """Print a line without breaking the bar: to the bar's stream, or to ``file`` (e.g.
        results to stdout while the bar is on stderr)."""
        file = file if file is not None else self.stream
        if self._bar is not None:
            self._bar.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.done != self._last_line_done:
            self._line(self._clock())

    def rate(self, now: float) -> float | None:
        """Units per second since the first count reported; None until that rests on
        :data:`RATE_MIN_SECONDS` and at least one unit."""
        if self._rate_from is None:
            return None
        since, done_then = self._rate_from
        if now - since < RATE_MIN_SECONDS or self.done <= done_then:
            return None
        return (self.done - done_then) / (now - since)

    def _line(self, now: float) -> None:
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        percent = (f" ({100 * self.done / self.total:.0f} %)" if self.total else "")
        rate = self.rate(now)
        speed = f", {speed_text(rate, self.unit)}" if rate is not None else ""
        extras = "".join(f" {k} {_short(v)}" for k, v in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit}{percent}{speed}{extras}", file=self.stream,
              flush=True)
        self._last_line_at, self._last_line_done = now, self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def speed_text(per_second: float, unit: str) -> str:
    """A rate in the unit that has digits: "12.5 step/s", or "3.2 s/step" below 1 a second."""
    if per_second >= 1 or per_second <= 0:
        return f"{per_second:.1f} {unit}/s"
    return f"{1 / per_second:.1f} s/{unit}"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
