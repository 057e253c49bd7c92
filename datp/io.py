"""Writes that an interruption cannot leave half done, and making written files durable.

An atomic write goes to a temporary file beside its target, is fsynced, then renamed over the
target, and the folder is fsynced so that the rename survives a crash: a reader sees the old
file or the whole new one, never a part. On any failure the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def fsync_file(path: Path) -> None:
    """Write the content of the file at ``path`` to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make the names created, renamed or removed inside ``folder`` durable."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def syncfs(folder: Path) -> bool:
    """``syncfs(2)`` of the filesystem holding ``folder``: one call writes every file there to
    disk. False where there is none (not Linux) or it failed."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(folder, os.O_RDONLY)
    try:
        return call(fd) == 0
    finally:
        os.close(fd)


def make_durable(folder: Path, files: list[Path]) -> None:
    """Make ``files`` (all inside ``folder``, written without fsync) and ``folder`` durable at
    once, after the last was written: one ``syncfs`` where it exists (else one fsync per file),
    then one fsync of the folder."""
    if not syncfs(folder):
        for path in files:
            fsync_file(path)
    fsync_folder(folder)


def temporary_beside(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` in the folder of ``path`` (which must exist),
    readable by its owner only, for a write that is renamed to ``path`` once complete."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(temporary)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, temporary: Path | None = None) -> Iterator[BinaryIO]:
    """A binary handle whose content appears at ``path`` only once completely written and
    fsynced (see the module). The parent folders are created. ``temporary`` names the file written
    first (default: :func:`temporary_beside`); it must be in the folder of ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path) if temporary is None else temporary
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the whole new one."""
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(
    path: str | Path, value: Any, *, indent: int = 2, sort_keys: bool = False
) -> None:
    """:func:`atomic_write_text` of ``json.dumps(value, indent=indent, sort_keys=sort_keys)``
    (no newline after it)."""
    atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys))
