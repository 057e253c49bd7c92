"""Checkpoint files: written atomically (:mod:`datp.io`), read with ``weights_only=True``.

What a training checkpoint holds, and the keys it is written with, is
:mod:`datp.run_state`'s; here are the file operations any plain dict of tensors, numbers,
strings, lists and dicts needs (so loading never unpickles arbitrary objects): the atomic write,
the safe read and its errors in words, the git revision and the random generators' states as
plain data.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import datp
from datp.errors import UserError, WriteError
from datp.io import fsync_file, fsync_folder, temporary_beside


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, or made for another configuration."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: the file under
    ``path`` is always a whole checkpoint, the previous one until the new one is complete.

    A write that fails (a full disk, no permission) raises ``WriteError`` naming the file and
    the reason; torch reports a full disk as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``, which says neither.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_beside(path)
    except OSError as error:
        raise WriteError(f"{path}: cannot write the checkpoint ({_reason(error, path)})") from error
    try:
        torch.save(state, temporary)  # by name: torch's own writer, whose errors are judged below
        fsync_file(temporary)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        # Judge the disk before the partial file is removed: removing it frees the space.
        full = _disk_full(path.parent) or (
            isinstance(error, OSError) and error.errno == errno.ENOSPC
        )
        temporary.unlink(missing_ok=True)
        if not (isinstance(error, OSError) or full or _torch_write_failure(error)):
            raise  # something in the state that cannot be saved: a bug, not the disk
        kept = " (the previous checkpoint is intact)" if path.exists() else ""
        reason = "no space left on the device" if full else _reason(error, path)
        raise WriteError(f"{path}: cannot write the checkpoint: {reason}{kept}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def _reason(error: BaseException, path: Path) -> str:
    """Why a write failed, in words: a full disk is named as such whatever torch raised."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC or _disk_full(path.parent):
        return "no space left on the device"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _torch_write_failure(error: BaseException) -> bool:
    """Whether torch's RuntimeError came from writing the file (its zip writer's messages)."""
    text = str(error)
    return "inline_container" in text or "unexpected pos" in text


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_load_error(error: BaseException, path: str | Path | None = None) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line.

    Never repeats torch's advice to retry with ``weights_only=False``: for a file of unknown
    origin that runs arbitrary code. A pickle that safe loading refuses (a file written by
    ``pickle.dump``, or holding objects of other classes) is named as such, with the type torch
    reports and, given ``path``, the classes the file names (read from its opcodes, never run).
    """
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (
            f"it holds pickled Python objects ({found.group(1)}) besides tensors and plain "
            "data, and loading those could run arbitrary code, so datp does not load it"
        )
    if "Weights only load failed" in text and (path is None or _is_pickle(path)):
        reported = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        torch_says = f"torch: {reported.group(1).strip()}" if reported else "torch refuses it"
        names = pickled_globals(path) if path is not None else []
        holds = f"; it names {', '.join(names[:3])}{', ...' * (len(names) > 3)}" if names else ""
        return (
            f"it is a Python pickle that safe loading (weights_only) refuses ({torch_says}"
            f"{holds}), not plain tensors and data as torch.save writes them; loading it "
            "unsafely could run arbitrary code, so datp does not load it"
        )
    if "central directory" in text or "zip archive" in text:
        return "it is truncated or corrupt (not a whole torch file)"
    if (
        isinstance(error, pickle.UnpicklingError | struct.error | KeyError | EOFError | ValueError)
        or "magic number" in text
    ):
        return "it is not a file written by torch.save (or it is corrupt)"
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"


def _is_pickle(path: str | Path) -> bool:
    """Whether the file starts as a pickle of protocol 2 or later does (PROTO, then 2..5)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def pickled_globals(path: str | Path) -> list[str]:
    """``module.name`` of each class or function a pickle file names, in order, read from its
    opcodes with :mod:`pickletools` (nothing is unpickled); [] for a file that is no pickle."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    memo: dict[int, str] = {}
    try:
        with open(path, "rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                if opcode.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif opcode.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
                elif isinstance(arg, str) and "UNICODE" in opcode.name:
                    strings.append(arg)
    except (OSError, ValueError, pickle.UnpicklingError):
        pass  # names found before the end are still reported
    return list(dict.fromkeys(names))


def load_plain(path: Path, *, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint file with ``weights_only=True``, whatever it holds; errors name the
    file and the problem (what a datp checkpoint must hold is :mod:`datp.run_state`'s)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path}: checkpoint cannot be loaded: {describe_load_error(error, path)}"
        ) from error


def git_revision() -> str:
    """The commit of the datp source (``-dirty`` with local changes); "unknown" outside git."""
    root = Path(datp.__file__).resolve().parent.parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def rng_states() -> dict[str, Any]:
    """Every random generator the training loop touches, as checkpoint-safe plain data."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"])
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
