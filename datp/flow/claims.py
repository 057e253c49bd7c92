"""Claims: one extractor per video when several ``datp flow`` processes share an output folder.

Before a process extracts a video it creates ``.<name>.claim`` beside the video's output with
``O_CREAT | O_EXCL`` (atomic, also on NFS v3+), holding ``host pid``; it removes the claim when
the video is finished or has failed. Another process that meets the claim leaves the video to
its holder, so concurrent processes (``--jobs``, shards of a job array, or a second command
started by mistake) share the work video by video and each video is extracted once.

A claim whose holder is gone is taken over: on this host when its pid is no longer alive; from
another host (which cannot be asked) at once when the claim names this process's Slurm task
(job, step and rank: a requeued task runs again on another node, and Slurm runs one instance of
a task at a time), else once the claim has not been refreshed for :data:`STALE_SECONDS`: holders
touch their claims every :data:`HEARTBEAT_SECONDS`. A take-over renames the stale claim to a
name of the taker's own first, so that of two takers only one wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""How often a holder refreshes (touches) the claims it holds."""
STALE_SECONDS = 600.0
"""A claim of another host not refreshed for this long belongs to a process that is gone."""


def claim_path(output: Path) -> Path:
    """The claim file for the output ``output`` (from :func:`datp.flow.storage.output_path`)."""
    return output.with_name(f".{output.name}.claim")


def slurm_task() -> str:
    """``slurm JOB.STEP.RANK`` of this process under Slurm ("" elsewhere): the same for a task
    requeued on another node, different for every process of a job that runs at once."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    step, rank = os.environ.get("SLURM_STEP_ID", "batch"), os.environ.get("SLURM_PROCID", "0")
    return f"slurm {job}.{step}.{rank}"


def _me() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _unlink_if_mine(path: Path) -> None:
    """Remove the claim at ``path`` if this process still holds it: one taken over as stale by
    another process is that process's now, and removing it would let a third extract too."""
    try:
        holder = path.read_text().partition("\n")[0].strip()
    except FileNotFoundError:
        return
    if holder == _me():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(text: str, modified: float) -> bool:
    """Whether the claim holding ``text`` ("host pid", then maybe the Slurm task), last
    refreshed at ``modified``, belongs to a process that is gone."""
    first, _, task = text.partition("\n")
    host, _, pid = first.rpartition(" ")
    if host == socket.gethostname() and pid.isdigit():
        return not _alive(int(pid))
    if task.strip() and task.strip() == slurm_task():  # this task's previous run, requeued
        return True
    return time.time() - modified > STALE_SECONDS


class Claims:
    """The claims this process holds, refreshed by a daemon thread while any is held."""

    def __init__(self) -> None:
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def acquire(self, output: Path) -> str | None:
        """Claim ``output``; None when claimed, else who holds it (``"host pid"``)."""
        path = claim_path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a take-over can race with another taker: try again
            text = self._create(path)
            if text is None:
                with self._lock:
                    self._held.add(path)
                    self._start_heartbeat()
                return None
            if not self._take_over(path, text):
                break
        return text.partition("\n")[0] or "unknown"

    def release(self, output: Path) -> None:
        path = claim_path(output)
        with self._lock:
            self._held.discard(path)
        _unlink_if_mine(path)

    def release_all(self) -> None:
        with self._lock:
            held, self._held = self._held, set()
        for path in held:
            _unlink_if_mine(path)

    @staticmethod
    def _create(path: Path) -> str | None:
        """Create the claim (None) or read what the claim there says ("": gone meanwhile)."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                return path.read_text().strip() or "unknown"
            except FileNotFoundError:  # released meanwhile: the caller tries again
                return ""
        try:
            os.write(fd, "".join(f"{line}\n" for line in (_me(), slurm_task()) if line).encode())
        finally:
            os.close(fd)
        return None

    @staticmethod
    def _take_over(path: Path, holder: str) -> bool:
        """Remove ``path`` if ``holder``'s claim there is stale; True when the caller may try
        to claim again."""
        if holder == "":
            return True
        try:
            modified = path.stat().st_mtime
        except FileNotFoundError:
            return True
        if not _is_stale(holder, modified):
            return False
        mine = path.with_name(f"{path.name}.stale-{socket.gethostname()}-{os.getpid()}")
        try:
            os.rename(path, mine)  # of two takers, one finds the claim gone
        except FileNotFoundError:
            return True
        taken = mine.read_text().strip()
        if taken != holder:  # a fresh claim of a third process replaced the stale one: put it back
            with contextlib.suppress(FileExistsError):
                os.link(mine, path)
            mine.unlink(missing_ok=True)
            return False
        mine.unlink(missing_ok=True)
        log.warning("%s: taking over the claim of %s, which is gone", path,
                    holder.partition("\n")[0])
        return True

    def _start_heartbeat(self) -> None:
        """(Called holding the lock.) A refreshing thread while claims are held."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="flow-claims", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                held = list(self._held)
                if not held:  # none left: end (the next claim starts another)
                    self._thread = None
                    return
            for path in held:
                # A refresh that fails this time (NFS: ESTALE, EIO) is tried again next time;
                # the thread must live on, or live claims would look stale to other hosts.
                with contextlib.suppress(OSError):
                    os.utime(path)
