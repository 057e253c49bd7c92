"""``datp flow`` when things go wrong: a killed parent, a full disk, crashed runs' leftovers, a
truncated video. The kill -9 case runs real processes; the full disk is a small tmpfs mounted
by the test (as root only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from datp.cli import main
from datp.data.video import write_video
from datp.errors import InputError
from datp.flow.extract import ExtractOptions, extract_dataset, find_videos, truncation_warning
from tests.data.conftest import moving_frames

pytest.importorskip("cv2")
pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[2]


def run_all(root, out, **options):
    videos = find_videos(root)
    return {r.video: r for r in extract_dataset(root, out, videos, ExtractOptions(**options))}


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if ".tmp-" in p.name)


def children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


PARENT = textwrap.dedent(
    """
    import sys
    from datp.flow.extract import ExtractOptions, extract_dataset, find_videos
    root, out = sys.argv[1], sys.argv[2]
    options = ExtractOptions(backend="opencv", short_side=64, fmt="compact")
    for result in extract_dataset(root, out, find_videos(root), options, jobs=2):
        print(result.video, result.status, flush=True)
    """
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_end_when_the_parent_is_killed(tmp_path):
    root = tmp_path / "videos"
    for i in range(8):  # enough work that both workers are busy when the parent dies
        write_video(root / f"v{i}.avi", moving_frames(40, height=64, width=80, seed=i))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(root), str(tmp_path / "flow")],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    workers: set[int] = set()
    try:
        first = parent.stdout.readline()  # one video done: the pool and its workers are up
        assert first.strip().endswith("done"), first
        time.sleep(1.0)  # the other worker has started too
        workers = children(parent.pid)
        assert len(workers) >= 2, workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
        assert not left, f"worker processes {left} outlived their killed parent"
    finally:  # what the old code left behind would otherwise live on after the test
        for pid in workers | children(parent.pid) | {parent.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs at ``tmp_path / "disk"`` (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("fmt", ["jpeg", "compact", "zstd"])
def test_a_full_disk_leaves_no_temporary_output(small_disk, tmp_path, fmt):
    if fmt == "zstd":
        pytest.importorskip("zstandard")
    root = tmp_path / "videos"
    # Noise frames give noisy flow that neither JPEG nor zstd squeezes into 256 KiB.
    noise = np.random.default_rng(0).integers(0, 256, (60, 128, 160, 3), dtype=np.uint8)
    write_video(root / "big.avi", noise)
    results = run_all(root, small_disk / "flow", backend="dis", short_side=128, fmt=fmt)
    assert results["big.avi"].status == "failed"
    assert "No space left" in results["big.avi"].error
    assert temporaries(small_disk) == []
    assert not any(p.name.startswith("big") for p in (small_disk / "flow").iterdir())


@pytest.mark.parametrize("fmt", ["jpeg", "compact"])
def test_leftovers_of_crashed_runs_are_removed_when_the_video_is_extracted(tmp_path, fmt):
    root = tmp_path / "videos"
    write_video(root / "a" / "v1.avi", moving_frames(4, seed=1))
    write_video(root / "a" / "v2.avi", moving_frames(4, seed=2))
    out = tmp_path / "flow"
    name = "v1" if fmt == "jpeg" else "v1.flow"
    host = socket.gethostname()
    dead = _a_dead_pid()
    crashed = out / "a" / f".{name}.tmp-{host}-{dead}"  # a killed run's
    if fmt == "jpeg":
        crashed.mkdir(parents=True)
        (crashed / "flow_x_00001.jpg").write_bytes(b"half")
    else:
        crashed.parent.mkdir(parents=True)
        crashed.write_bytes(b"half")
    other = out / "a" / f".v2-other.flow.tmp-{host}-{dead}"  # not a temporary of v1 or v2
    other.write_bytes(b"someone else's")
    # A writer of the same output that is still running (another shard): left alone.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = out / "a" / f".{name}.tmp-{host}-{sleeper.pid}"
        live.write_bytes(b"in progress")
        results = run_all(root, out, backend="dis", short_side=32, fmt=fmt)
        assert {r.status for r in results.values()} == {"done"}
        assert not crashed.exists()
        assert temporaries(out) == sorted([other, live])
    finally:
        sleeper.kill()
        sleeper.wait()


def _a_dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_truncated_video_is_reported_with_both_counts(tmp_path, capsys):
    root = tmp_path / "videos"
    write_video(root / "whole.avi", moving_frames(12, seed=1))
    cut = root / "cut.avi"
    write_video(cut, moving_frames(40, seed=2))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # AVI declares 40 frames
    results = run_all(root, tmp_path / "flow", backend="dis", short_side=32, fmt="compact")
    assert results["cut.avi"].status == "done" and results["whole.avi"].warning == ""
    frames = results["cut.avi"].pairs + 1
    assert 1 < frames < 40
    assert results["cut.avi"].warning == truncation_warning(frames, 40)
    assert "declares 40 frames" in results["cut.avi"].warning
    assert f"{frames} decoded" in results["cut.avi"].warning
    code = main(["flow", str(root), str(tmp_path / "flow2"), "--backend", "dis",
                 "--short-side", "32"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"WARNING cut.avi: truncated? the container declares 40 frames, {frames} decoded" in text
    assert "WARNING whole.avi" not in text


def test_two_videos_with_one_output_are_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "a" / "x.avi", moving_frames(4, seed=1))
    write_video(root / "a" / "x.mp4", moving_frames(4, seed=2))
    out = tmp_path / "flow"
    with pytest.raises(InputError, match=r"x.mp4 and .*x.avi would both write the flow at"):
        extract_dataset(root, out, find_videos(root), ExtractOptions(backend="dis"))
    assert not out.exists()
