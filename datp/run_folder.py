"""A training run's folder: what it records, and how a new run or a resumed one opens it.

    config.toml     the resolved config (rewritten on resume; run.json records what changed)
    run.json        git revision, command line, start time, and every resume with its changes
    metrics.jsonl   one JSON object per logged step, per epoch, per evaluation
    checkpoints/    last.pt, best.pt (written by the training loop)
    tensorboard/    the same scalars, when tensorboard is installed
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from datp.checkpoint import CheckpointError, git_revision, load_checkpoint
from datp.config import Config, dump_toml, to_dict
from datp.distributed import DistributedContext
from datp.resume import RunIdentity, check_resume

log = logging.getLogger(__name__)


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


def open_run_folder(
    run_dir: Path,
    config: Config,
    *,
    identity: RunIdentity,
    resume: bool,
    context: DistributedContext,
) -> dict[str, Any] | None:
    """Create the run folder, or check the run to resume; returns its last checkpoint's state.

    A new run refuses a folder that holds one, and starts a new metrics.jsonl where a run that
    never saved a checkpoint left one; ``resume`` refuses a folder without a checkpoint and any
    change of setting that alters what is learned, and records the changes it allows.
    """
    last = run_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise CheckpointError(
            f"{run_dir}: nothing to resume, it holds no checkpoint ({last}); "
            "drop --resume to start a new run there"
        )
    if not resume and last.exists():
        raise FileExistsError(
            f"{run_dir} already holds a run ({last}); pass --resume to continue it or choose "
            "another --out"
        )
    state = None
    changes: dict[str, tuple[Any, Any]] = {}
    if resume:
        state = load_checkpoint(last)
        changes = check_resume(state, to_dict(config), now=identity, path=last)
    if not context.is_main:
        return state
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_toml(config))
    record_path = run_dir / "run.json"
    if state is None:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # of a run that never saved
        record: dict[str, Any] = {
            "git_revision": git_revision(),
            "command": sys.argv,
            "started": _now(),
            "world_size": context.world_size,
            "resumes": [],
        }
    else:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        record.setdefault("resumes", []).append({
            "at": _now(),
            "after_epoch": state["epoch"],
            "step_in_epoch": state.get("step_in_epoch", 0),
            "command": sys.argv,
            "git_revision": git_revision(),
            "changed": {key: {"was": was, "now": now} for key, (was, now) in changes.items()},
        })
        for key, (was, now) in changes.items():
            log.info("resuming with %s changed from %r to %r", key, was, now)
    record_path.write_text(json.dumps(record, indent=2))
    return state


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
