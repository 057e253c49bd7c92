"""A pipeline of stages in threads, bounded queues between them: while one stage works on an
item, the stage before it works on the next one and the stage after it on the previous one.

``staged(items, [decode, compute, write])`` yields ``write(compute(decode(item)))`` for every
item, in order. A stage may return :class:`Done` to hand a final result past the stages after it
(a video skipped or failed before its flow was computed). Threads pay because the heavy work
(video decoding, torch kernels, JPEG and zstd encoding, file writes) releases the GIL.

At most ``depth`` items wait between two stages, so at most ``stages + (stages - 1) * depth``
items are held at once. An exception in a stage ends the pipeline and is raised to the caller;
when the caller stops iterating (``close()``, Ctrl-C), ``stop`` is set, no stage starts another
item, and the threads are joined before ``close()`` returns.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Done:
    """A final result that skips the remaining stages."""

    result: Any


_END = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def staged(
    items: Iterable,
    stages: Sequence[Callable[[Any], Any]],
    *,
    depth: int = 1,
    stop: threading.Event | None = None,
) -> Iterator:
    """Run ``stages`` over ``items`` in one thread per stage; yields the results in order."""
    assert stages and depth >= 1
    stop = stop if stop is not None else threading.Event()
    queues = [queue.Queue(maxsize=depth) for _ in stages[1:]] + [queue.Queue()]
    threads = [threading.Thread(target=_stage, args=(i, items, stages, queues, stop),
                                name=f"pipeline-{i}", daemon=True) for i in range(len(stages))]
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                value = queues[-1].get(timeout=0.5)
            except queue.Empty:
                if stop.is_set():  # stopped from outside
                    return
                continue
            if value is _END:
                return
            if isinstance(value, _Failed):
                raise value.error
            yield value.result if isinstance(value, Done) else value
    finally:
        stop.set()
        for q in queues:  # unblock a stage waiting to get: it sees stop next
            with contextlib.suppress(queue.Full):
                q.put_nowait(_END)
        for thread in threads:
            thread.join()


def _put(q: queue.Queue, value: Any, stop: threading.Event) -> bool:
    """Put ``value`` into ``q`` unless ``stop`` is set first; whether it was put."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _stage(index: int, items: Iterable, stages: Sequence[Callable[[Any], Any]],
           queues: list[queue.Queue], stop: threading.Event) -> None:
    """Stage ``index``'s thread: the items (first stage) or the stage before's results, through
    ``stages[index]``, into its queue; the end and any failure are passed on."""
    out = queues[index]
    source = iter(items) if index == 0 else None
    try:
        while not stop.is_set():
            value = next(source, _END) if source is not None else queues[index - 1].get()
            if value is _END or isinstance(value, _Failed):
                _put(out, value, stop)
                return
            if not isinstance(value, Done):
                value = stages[index](value)
            if not _put(out, value, stop):
                return
    except BaseException as error:  # handed to the caller, raised there
        _put(out, _Failed(error), stop)
