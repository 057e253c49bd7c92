"""Progress of long work, as the command line shows it: a bar on a terminal, sparse lines in a log.

Library functions report progress through a plain callback ``progress(done, total)`` and never
draw anything; the commands turn that into a :class:`Progress`. On a terminal it is a tqdm bar;
when stderr is not a terminal (a log file, CI, ``nohup``) a bar's carriage returns would flood the
log, so it writes one line every ``every_fraction`` of the total or ``every_seconds``, whichever
comes first, and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


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
        self._started = time.monotonic()
        self._last_line_at = self._started
        self._last_line_done = 0
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
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: _short(v) for k, v in self.postfix.items()},
                                      refresh=False)
            self._bar.update(step)
            return
        now = time.monotonic()
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
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        percent = (f" ({100 * self.done / self.total:.0f} %)" if self.total else "")
        extras = "".join(f" {k} {_short(v)}" for k, v in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit}{percent}, {self.done / elapsed:.1f} "
              f"{self.unit}/s{extras}", file=self.stream, flush=True)
        self._last_line_at, self._last_line_done = now, self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
