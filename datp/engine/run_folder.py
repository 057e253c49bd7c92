"""A training run's folder: what it records, and how a new run or a resumed one opens it.

    config.toml     the resolved config (rewritten on resume; run.json records what changed)
    run.json        git revision, command line, start time, and every resume with its changes
    metrics.jsonl   one JSON object per logged step, per epoch, per evaluation
    checkpoints/    last.pt, best.pt (written by the training loop)
    tensorboard/    the same scalars, when tensorboard is installed
    run.lock        who holds the folder now (empty when no process does): :class:`RunFolderLock`
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from datp.checkpoint import CheckpointError, git_revision
from datp.config import dump_toml
from datp.distributed import DistributedContext
from datp.engine.resume import check_resume
from datp.errors import InputError
from datp.io import atomic_write_json, atomic_write_text
from datp.run_state import RunIdentity, RunState

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class RunFolderInUse(InputError):
    """Another process holds the run folder."""


class RunFolderLock:
    """A run folder held by this process: an exclusive ``flock`` on ``run.lock``, whose text
    names the holder (host, pid, since when, Slurm job).

    The kernel (or the NFS server) drops the lock when its process ends, however it ends, so a
    lock whose process is gone is simply taken; the log says whose it was (its text was not
    cleared by a clean :meth:`release`). A second process is refused with the holder's name. On
    a filesystem without file locks (Lustre mounted without ``flock``) the folder is used
    unlocked, with a warning.
    """

    def __init__(self, run_dir: Path, handle: IO[str] | None, *, created: bool) -> None:
        self.run_dir = run_dir
        self.handle = handle
        self.created = created

    @classmethod
    def take(cls, run_dir: Path) -> RunFolderLock:
        """Hold ``run_dir`` (made if missing); raises :class:`RunFolderInUse` naming the
        holder."""
        created = not run_dir.is_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_NAME
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_holder(handle, wait=True))
            handle.close()
            raise RunFolderInUse(
                f"{run_dir} is in use by another run ({holder}); wait for it to end or choose "
                "another --out"
            ) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            log.warning("%s: this filesystem cannot lock files (%s); nothing stops a second "
                        "run from writing into this folder", path, error.strerror)
            handle.close()
            return cls(run_dir, None, created=created)
        previous = _holder(handle, wait=False)
        if previous:
            log.warning("%s: taking over from %s, which ended without releasing it", path,
                        _describe(previous))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_this_process()) + "\n")
        handle.flush()
        return cls(run_dir, handle, created=created)

    def release(self) -> None:
        """Clear the holder's name and drop the lock; a folder this lock made and nothing else
        uses is removed again."""
        if self.handle is None or self.handle.closed:
            return
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.flush()
        fcntl.flock(self.handle, fcntl.LOCK_UN)  # also for loader workers that share the file
        self.handle.close()
        if self.created and [p.name for p in self.run_dir.iterdir()] == [LOCK_NAME]:
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)
            self.run_dir.rmdir()


def _this_process() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": _now(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "command": sys.argv,
    }


def _holder(handle: IO[str], *, wait: bool) -> dict[str, Any] | None:
    """The holder a lock file names (None: none); ``wait``: give a starting holder a moment to
    write its name."""
    for _ in range(20 if wait else 1):
        handle.seek(0)
        text = handle.read().strip()
        if text:
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return {"text": text[:200]}
        if wait:
            time.sleep(0.1)
    return None


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a process that has not written its name"
    if "pid" not in holder:
        return repr(holder.get("text", ""))
    slurm = f", Slurm job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    where = f"pid {holder['pid']} on {holder.get('host', '?')}"
    return f"{where} since {holder.get('since', '?')}{slurm}"


class RunLog:
    """metrics.jsonl plus TensorBoard when it is installed; only the main process writes."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.info("tensorboard is not installed; metrics go to %s only", self.path)

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps the checkpoint it resumes from."""
    return run_dir / "checkpoints" / "last.pt"


def resumes(run_dir: Path, resume: bool | str) -> bool:
    """Whether ``--resume`` (true, false or "auto") continues the run in ``run_dir``: "auto"
    does where the folder holds a checkpoint."""
    return last_checkpoint(run_dir).is_file() if resume == "auto" else bool(resume)


def run_outputs(run_dir: Path) -> list[str]:
    """What ``run_dir`` holds of a run, as paths relative to it: its checkpoints, its records
    (``run.json``, ``metrics.jsonl``) and the evaluation reports in it (``eval_*/``)."""
    found = sorted(p.relative_to(run_dir).as_posix()
                   for p in (run_dir / "checkpoints").glob("*.pt") if p.is_file())
    found += [name for name in ("run.json", "metrics.jsonl") if (run_dir / name).is_file()]
    found += sorted(f"{p.name}/" for p in run_dir.glob("eval*")
                    if (p / "metrics.json").is_file() or (p / "scores.pt").is_file())
    return found


def _nothing_to_resume(run_dir: Path, outputs: list[str]) -> str:
    """Why ``--resume`` cannot continue the run in ``run_dir``, and what it could do."""
    last = last_checkpoint(run_dir)
    if not outputs:
        return (f"{run_dir}: nothing to resume, it holds no checkpoint ({last}); drop --resume "
                "to start a new run there")
    message = (f"{run_dir}: nothing to resume from: it holds no {last.relative_to(run_dir)} but "
               f"{', '.join(outputs)} of an earlier run, which a new run would replace")
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        try:
            epoch = RunState.load(best).position
        except CheckpointError:
            epoch = None
        if epoch is not None:
            return (f"{message}; its best.pt holds the whole training state after epoch "
                    f"{epoch.epoch}: copy it to {last} to continue from there, or choose "
                    "another --out")
    return f"{message}; choose another --out, or move them away to start over there"


def open_run_folder(
    run_dir: Path,
    config: dict[str, Any],
    *,
    identity: RunIdentity,
    resume: bool | str,
    context: DistributedContext,
) -> RunState | None:
    """Create the run folder, or check the run to resume; returns its last checkpoint's state.

    No output of a run is ever replaced by another run: a new run refuses a folder that holds
    anything of one (:func:`run_outputs`); ``resume`` refuses a folder without ``last.pt``
    (naming what it holds and what it can resume from) and any change of setting that alters
    what is learned, and records the changes it allows. ``resume="auto"`` resumes when the
    folder holds ``last.pt``, starts a new run where the folder holds nothing of a run, and
    refuses the rest (one command line for the first start and every requeue of a cluster job,
    which must never start over on a finished run's results).
    """
    last = last_checkpoint(run_dir)
    outputs = run_outputs(run_dir)
    if resume == "auto":
        resume = last.is_file() or bool(outputs)
        log.info("%s: %s", run_dir, "resuming its run" if last.is_file()
                 else "it holds no run: a new run" if not outputs else "no last.pt")
    if resume and not last.is_file():
        raise CheckpointError(_nothing_to_resume(run_dir, outputs))
    if not resume and outputs:
        advice = ("pass --resume to continue it or choose another --out" if last.is_file() else
                  "it saved no checkpoint, so nothing can continue it: move them away to start "
                  "over there, or choose another --out")
        raise FileExistsError(f"{run_dir} already holds a run ({', '.join(outputs)}); {advice}")
    state = None
    changes: dict[str, tuple[Any, Any]] = {}
    if resume:
        state = RunState.load(last)
        changes = check_resume(state.config or {}, config, then=state.identity,
                               now=identity, path=last)
        state.require_training(last)
    if not context.is_main:
        return state
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.toml", dump_toml(config))
    record_path = run_dir / "run.json"
    record = _run_record(record_path, state, changes, context)
    atomic_write_json(record_path, record)
    return state


def _run_record(
    record_path: Path, state: RunState | None, changes: dict[str, tuple[Any, Any]],
    context: DistributedContext,
) -> dict[str, Any]:
    """run.json as it must now read: a new run's record, or the record with this resume (and
    the settings it changed) appended."""
    if state is None:
        return {
            "git_revision": git_revision(),
            "command": sys.argv,
            "started": _now(),
            "world_size": context.world_size,
            "resumes": [],
        }
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.setdefault("resumes", []).append({
        "at": _now(),
        "after_epoch": state.position.epoch,
        "step_in_epoch": state.position.step_in_epoch,
        "command": sys.argv,
        "git_revision": git_revision(),
        "changed": {key: {"was": was, "now": now} for key, (was, now) in changes.items()},
    })
    for key, (was, now) in changes.items():
        log.info("resuming with %s changed from %r to %r", key, was, now)
    return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
