"""``datp flow`` processes sharing one output folder: claims, stale claims, shards of a Slurm job
array, symlinked datasets. Concurrency runs real processes."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from datp.cli import main
from datp.data.video import write_video
from datp.flow.claims import Claims, claim_path
from datp.flow.extract import ExtractOptions, device_for_job, extract_dataset, find_videos
from tests.data.conftest import moving_frames

pytest.importorskip("cv2")
pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ["--backend", "torch", "--device", "cpu", "--short-side", "24", "--format", "compact"]


def make_videos(root: Path, count: int, frames: int = 12) -> None:
    for i in range(count):
        write_video(root / f"c{i % 3}" / f"v{i}.avi", moving_frames(frames, seed=i))


def contents(out: Path) -> dict[str, bytes]:
    """Every flow file under ``out`` and its bytes (nothing else may be left there)."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    settings = files.pop("datp_flow.json")
    assert settings
    return files


def run_cli(*argv: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "datp", "flow", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_commands_on_one_output_extract_each_video_once(tmp_path):
    root, out = tmp_path / "videos", tmp_path / "flow"
    make_videos(root, 12, frames=16)
    first, second = (run_cli(str(root), str(out), *OPTIONS) for _ in range(2))
    reports = [process.communicate(timeout=300) for process in (first, second)]
    for process, (stdout, stderr) in zip((first, second), reports, strict=True):
        assert process.returncode == 0, stdout + stderr
        assert "failed" in stdout and " 0 failed" in stdout, stdout
    extracted = [int(re.search(r"(\d+) extracted", stdout)[1]) for stdout, _ in reports]
    assert sum(extracted) == 12, reports  # each video once, by one of them
    assert main(["flow", str(root), str(tmp_path / "clean"), *OPTIONS]) == 0
    assert contents(out) == contents(tmp_path / "clean")


def test_a_video_claimed_by_a_live_process_is_left_to_it_and_said_so(tmp_path, capsys):
    root, out = tmp_path / "videos", tmp_path / "flow"
    make_videos(root, 3)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = claim_path(out / "c1" / "v1.flow")
        claim.parent.mkdir(parents=True)
        claim.write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        assert main(["flow", str(root), str(out), *OPTIONS]) == 0
        text = capsys.readouterr().out
        assert "2 extracted" in text
        assert f"1 left to other processes extracting them now ({socket.gethostname()} " \
               f"{sleeper.pid})" in text
        assert not (out / "c1" / "v1.flow").exists() and claim.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_claim_of_a_dead_process_is_taken_over(tmp_path):
    root, out = tmp_path / "videos", tmp_path / "flow"
    make_videos(root, 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    claim = claim_path(out / "c0" / "v0.flow")
    claim.parent.mkdir(parents=True)
    claim.write_text(f"{socket.gethostname()} {int(dead.stdout)}\n")
    options = ExtractOptions(backend="dis", short_side=32, fmt="compact")
    results = {r.video: r.status for r in extract_dataset(root, out, find_videos(root), options)}
    assert results == {"c0/v0.avi": "done", "c1/v1.avi": "done"}
    assert not claim.exists()


def test_a_claim_is_held_once():
    claims = Claims()
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"datp-claim-{os.getpid()}" / "x.flow"
    try:
        assert claims.acquire(target) is None
        assert claims.acquire(target) == f"{socket.gethostname()} {os.getpid()}"  # held (by us)
        claims.release(target)
        assert not claim_path(target).exists()
        assert claims.acquire(target) is None
    finally:
        claims.release_all()
        claim_path(target).parent.rmdir()


def test_worker_processes_map_to_cuda_devices_round_robin():
    assert [device_for_job(None, i, count=4) for i in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert device_for_job("cuda", 5, count=2) == "cuda:1"
    assert device_for_job(None, 3, count=1) is None  # one device (or none): the default
    assert device_for_job("cuda:1", 0, count=4) == "cuda:1"  # a device named by the user
    assert device_for_job("cpu", 2, count=4) == "cpu"


def test_progress_reports_pairs_per_second(tmp_path, capsys):
    """A video takes minutes on a CPU: a rate in videos/s read 0.0."""
    root = tmp_path / "videos"
    make_videos(root, 2)
    assert main(["flow", str(root), str(tmp_path / "flow"), *OPTIONS]) == 0
    captured = capsys.readouterr()
    rates = [float(r) for r in re.findall(r"pairs/s (\d+\.\d+)", captured.err)]
    assert rates and rates[-1] > 0, captured.err
    assert re.search(r"\(22 frame pairs, \d+\.\d pairs/s\)", captured.out), captured.out


def test_symlinked_folders_and_files_are_followed_and_a_loop_ends(tmp_path):
    elsewhere = tmp_path / "shared"
    make_videos(elsewhere, 3)  # c0/v0, c1/v1, c2/v2
    root = tmp_path / "videos"
    write_video(root / "own" / "v9.avi", moving_frames(4, seed=9))
    (root / "linked").symlink_to(elsewhere / "c0", target_is_directory=True)  # a class folder
    (root / "own" / "v1.avi").symlink_to(elsewhere / "c1" / "v1.avi")  # a file
    (root / "own" / "loop").symlink_to(root, target_is_directory=True)  # a loop
    (root / "own" / "gone.avi").symlink_to(tmp_path / "missing.avi")  # broken
    assert find_videos(root) == ["linked/v0.avi", "own/v1.avi", "own/v9.avi"]
    assert main(["flow", str(root), str(tmp_path / "flow"), *OPTIONS]) == 0
    assert (tmp_path / "flow" / "linked" / "v0.flow").is_file()


def slurm_array_script() -> str:
    """The job-array script of the README, as users copy it."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Extracting flow with a job array", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S)[1]


def test_the_readme_job_array_extracts_the_union_of_a_full_run(tmp_path):
    """Every shard's command line of the Slurm array, run at once: the union of their outputs
    is a full run's, and every task ends with status 0."""
    root, out = tmp_path / "videos", tmp_path / "flow"
    make_videos(root, 7)
    script = tmp_path / "flow_array.sbatch"
    script.write_text(slurm_array_script())
    bin_dir = tmp_path / "bin"  # `datp` as the installed entry point would run it
    bin_dir.mkdir()
    shim = bin_dir / "datp"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m datp \"$@\"\n")
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    tasks = 3
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "DATASET": str(root), "OUT": str(out), "FLOW_OPTIONS": " ".join(OPTIONS),
           "SLURM_ARRAY_TASK_COUNT": str(tasks), "SLURM_ARRAY_TASK_MIN": "0"}
    processes = [
        subprocess.Popen(["bash", str(script)], cwd=tmp_path, text=True,
                         env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i in range(tasks)
    ]
    for process in processes:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output
        assert " 0 failed" in output
    assert main(["flow", str(root), str(tmp_path / "clean"), *OPTIONS]) == 0
    assert contents(out) == contents(tmp_path / "clean")


def test_a_requeued_slurm_task_takes_over_its_own_claim_from_another_node(tmp_path,
                                                                           monkeypatch):
    """Requeued, the task runs on another node: its previous run's claim names that node, whose
    processes this one cannot ask about, but also the same Slurm task."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "batch")
    monkeypatch.setenv("SLURM_PROCID", "0")
    mine, other = Claims(), tmp_path / "other.flow"
    target = tmp_path / "x.flow"
    claim_path(target).write_text("node-07 1234\nslurm 4242.batch.0\n")
    claim_path(other).write_text("node-07 1234\nslurm 4343.batch.0\n")  # another job's
    try:
        assert mine.acquire(target) is None
        assert claim_path(target).read_text() == \
            f"{socket.gethostname()} {os.getpid()}\nslurm 4242.batch.0\n"
        assert mine.acquire(other) == "node-07 1234"  # alive, for all this node knows
    finally:
        mine.release_all()


def test_releasing_a_claim_taken_over_by_another_process_leaves_theirs(tmp_path):
    """A claim taken over as stale is the taker's: the first holder's release must not remove it
    (a third process would then extract the video beside the taker)."""
    claims = Claims()
    target = tmp_path / "x.flow"
    assert claims.acquire(target) is None
    claim_path(target).write_text("otherhost 123\n")  # taken over meanwhile by another process
    claims.release(target)
    assert claim_path(target).read_text() == "otherhost 123\n"
    claims.release_all()
    assert claim_path(target).read_text() == "otherhost 123\n"
