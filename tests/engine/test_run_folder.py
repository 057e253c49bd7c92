"""One owner per run folder: the lock that names its holder, with real processes."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datp.engine.run_folder import LOCK_NAME, RunFolderInUse, RunFolderLock
from datp.run_state import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from pathlib import Path
from datp.engine.run_folder import RunFolderLock

lock = RunFolderLock.take(Path(sys.argv[1]))  # held while this process lives
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin or kills this process
"""


def _python(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            text=True, **kwargs)


def _hold(run_dir: Path) -> subprocess.Popen:
    holder = _python("-c", HOLDER, str(run_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_names_its_holder_and_refuses_another_process(tmp_path):
    holder = _hold(tmp_path / "run")
    try:
        with pytest.raises(RunFolderInUse, match=rf"run is in use by another run \(pid "
                                                 rf"{holder.pid} on .* since .*\); wait for it"):
            RunFolderLock.take(tmp_path / "run")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_the_lock_of_a_process_that_is_gone_is_taken_over_and_said_so(tmp_path, caplog):
    holder = _hold(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)  # no clean release
    holder.wait(timeout=60)
    with caplog.at_level(logging.WARNING, logger="datp.engine.run_folder"):
        lock = RunFolderLock.take(tmp_path / "run")
    assert f"taking over from pid {holder.pid} on " in caplog.text
    assert "which ended without releasing it" in caplog.text
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert (tmp_path / "run" / LOCK_NAME).read_text() == ""  # released cleanly: no holder named
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="datp.engine.run_folder"):
        RunFolderLock.take(tmp_path / "run").release()
    assert "taking over" not in caplog.text


def test_a_filesystem_without_locks_is_used_unlocked_with_a_warning(tmp_path, caplog,
                                                                   monkeypatch):
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="datp.engine.run_folder"):
        RunFolderLock.take(tmp_path / "run").release()
    assert "this filesystem cannot lock files (No locks available)" in caplog.text


def test_a_folder_made_for_a_run_that_was_refused_is_removed_again(tmp_path):
    lock = RunFolderLock.take(tmp_path / "new")
    lock.release()
    assert not (tmp_path / "new").exists()


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from datp.data.synthetic import SynthConfig, generate

    base = tmp_path_factory.mktemp("lock")
    root = generate(SynthConfig(classes=3, videos_per_class=4, clips_per_group=2, frames=12,
                                height=24, width=24), base / "data")
    path = base / "rgb.toml"
    path.write_text(
        f'[data]\nroot = "{root}"\nimage_size = 24\nresize_short = 24\nnum_segments = 3\n'
        'test_segments = 3\nworkers = 0\n[model]\nbackbone = "small_cnn"\n'
        '[train]\nepochs = 2\nbatch_size = 2\nlr_steps = [1]\ndevice = "cpu"\n'
    )
    return path


def _datp_train(config: Path, out: Path, *overrides: str) -> subprocess.Popen:
    sets = [arg for value in overrides for arg in ("--set", value)]
    return _python("-m", "datp", "train", str(config), "--out", str(out), "--no-progress", *sets,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_datp_train_on_a_held_folder_is_one_line_naming_the_holder(tmp_path, config):
    holder = _hold(tmp_path / "run")
    try:
        second = _datp_train(config, tmp_path / "run")
        _, stderr = second.communicate(timeout=600)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert second.returncode == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'run'} is in use by another run (pid "
                           f"{holder.pid} on ")
    assert "Traceback" not in stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_two_datp_train_started_at_once_on_one_folder_one_of_them_runs(tmp_path, config):
    """Both used to report success into one folder, config.toml saying one learning rate and
    last.pt trained with the other."""
    runs = [_datp_train(config, tmp_path / "run", f"train.lr={lr}") for lr in (0.01, 0.02)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    for run in runs:
        run.stdout.close()
        run.stderr.close()
    statuses = sorted(status for status, _ in results)
    assert statuses == [0, 2], results
    refused = next(err for status, err in results if status == 2).strip().splitlines()[-1]
    # refused while the other ran, or (if it was that quick) refused because it had finished
    assert "is in use by another run" in refused or "already holds a run" in refused
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]["train"]["lr"]
    assert f"lr = {saved}" in (tmp_path / "run" / "config.toml").read_text()
    epochs = [json.loads(line)["epoch"] for line in
              (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert epochs == [0, 1]


def _finished_run(tmp_path):
    """A run trained to its end (tiny), then its last.pt removed, as a user saving space does."""
    from datp.engine.build import training_run
    from datp.engine.train import train
    from tests.engine.test_train import _setup

    config, data, model = _setup(["train.epochs=1"])
    run_dir = tmp_path / "run"
    train(training_run(config, run_dir, data=data, model=model))
    (run_dir / "checkpoints" / "last.pt").unlink()
    return config, run_dir


def test_resume_auto_never_starts_over_on_what_a_run_left(tmp_path):
    """A folder with a finished run's best.pt, records and config but no last.pt: --resume auto
    refuses in one line, naming what it found and what it could resume from, and nothing in the
    folder changes; a new run (no --resume) refuses it too."""
    from datp.checkpoint import CheckpointError
    from datp.engine.build import training_run
    from datp.engine.train import train
    from tests.engine.test_train import _setup

    config, run_dir = _finished_run(tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    config, data, model = _setup(["train.epochs=1"])
    with pytest.raises(CheckpointError) as refused:
        train(training_run(config, run_dir, data=data, model=model, resume="auto"))
    message = str(refused.value)
    assert "\n" not in message and "nothing to resume from" in message
    assert "checkpoints/best.pt" in message and "run.json" in message
    assert "metrics.jsonl" in message and "after epoch 0: copy it to" in message
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(training_run(config, run_dir, data=data, model=model))
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert after == {p: b for p, b in before.items() if p.name != LOCK_NAME}


def test_a_new_run_refuses_the_records_of_a_run_that_saved_nothing(tmp_path):
    """run.json and metrics.jsonl alone (a run killed before its first checkpoint) are a run's
    output too: a new run does not replace them."""
    from datp.engine.build import training_run
    from datp.engine.train import train
    from tests.engine.test_train import _setup

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    (run_dir / "metrics.jsonl").write_text('{"kind": "train", "loss": 1.0}\n')
    from datp.checkpoint import CheckpointError

    config, data, model = _setup(["train.epochs=1"])
    for resume, refusal in ((False, FileExistsError), ("auto", CheckpointError)):
        with pytest.raises(refusal, match="run.json, metrics.jsonl") as refused:
            train(training_run(config, run_dir, data=data, model=model, resume=resume))
        assert "--resume to continue" not in str(refused.value)  # there is nothing to continue
    assert (run_dir / "metrics.jsonl").read_text() == '{"kind": "train", "loss": 1.0}\n'
