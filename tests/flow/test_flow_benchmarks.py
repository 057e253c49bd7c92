"""The flow half of benchmarks/gpu_checks.sh runs on the device image, which has no PyAV, no
OpenCV and no zstandard: run here with those modules hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HIDE = "import sys; sys.modules.update(av=None, cv2=None, zstandard=None); "


def run_hidden(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", HIDE + code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_end_to_end_benchmark_runs_without_pyav_opencv_or_zstandard():
    done = run_hidden(
        "import runpy; sys.argv = ['flow_pipeline.py', '--device', 'cpu', '--videos', '2', "
        "'--frames', '4', '--size', '32x40', '--short-side', '24']; "
        "runpy.run_path('benchmarks/flow_pipeline.py', run_name='__main__')")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for mode in ("serial", "pipelined"):
        row = next(line for line in lines if line.split()[:1] == [mode])
        assert row.split()[1] == "6", row  # 2 videos x 3 pairs


def test_the_throughput_benchmark_imports_without_them():
    done = run_hidden("import benchmarks.flow_throughput as b; "
                      "print(b.known_motion_pairs(b.textured_frames(3, seed=0), "
                      "b.MOTION_SCALES['mixed'], seed=1)[2].abs().amax(dim=(1, 2, 3)))")
    assert done.returncode == 0, done.stderr
    still, slow, fast = (float(v) for v in done.stdout.split("[")[1].split("]")[0].split(","))
    assert still == 0 and 0 < slow < 0.6 and fast > 3
