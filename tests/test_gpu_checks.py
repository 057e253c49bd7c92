"""benchmarks/gpu_checks.sh runs on the GPU image (torch, torchvision, Python 3.12; no PyAV, no
OpenCV, no zstandard): every benchmark script it calls must import, and the loader benchmark must
run, with those modules missing. A subprocess hides them as the image lacks them
(``sys.modules[name] = None`` makes ``import name`` raise ImportError)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECKS = ROOT / "benchmarks" / "gpu_checks.sh"
MISSING_ON_THE_IMAGE = ("av", "cv2", "zstandard")

HIDE = f"""
import runpy, sys
for name in {MISSING_ON_THE_IMAGE!r}:
    sys.modules[name] = None
for name in {MISSING_ON_THE_IMAGE!r}:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{{name}} was not hidden")
script, *arguments = sys.argv[1:]
sys.argv = [script, *arguments]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))  # as `python script` does
runpy.run_path(script, run_name="__main__")
"""


def _commands() -> list[str]:
    """The shell text of gpu_checks.sh without comments, continuation lines joined."""
    lines = [line for line in GPU_CHECKS.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    return "\n".join(lines).replace("\\\n", " ").splitlines()


def _scripts() -> list[str]:
    found = {m for line in _commands() for m in re.findall(r"benchmarks/[\w/]+\.py", line)}
    return sorted(found)


def _run_hidden(arguments: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", HIDE, *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_gpu_checks_calls_benchmark_scripts_that_exist():
    scripts = _scripts()
    assert "benchmarks/loading.py" in scripts and len(scripts) >= 3
    assert all((ROOT / script).is_file() for script in scripts), scripts


@pytest.mark.parametrize("script", _scripts())
def test_each_script_imports_without_av_cv2_and_zstandard(script):
    done = _run_hidden([script, "--help"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout


def test_a_hidden_module_is_caught(tmp_path):
    """The check can fail: a script that imports OpenCV at its top does not import here."""
    script = tmp_path / "uses_cv2.py"
    script.write_text("import argparse\nimport cv2\nargparse.ArgumentParser().parse_args()\n")
    done = _run_hidden([str(script), "--help"])
    assert done.returncode != 0 and "cv2" in done.stderr


def test_the_loader_step_runs_on_the_cpu_without_av_cv2_and_zstandard():
    """The loader step of gpu_checks.sh, at a tiny size and with the CPU for the GPU."""
    (line,) = [line for line in _commands() if "benchmarks/loading.py" in line]
    arguments = shlex.split(line[line.index("benchmarks/loading.py"):])
    arguments += ["--device", "cpu", "--workers", "1", "--batch-size", "2", "--seconds", "0.1",
                  "--videos", "3", "--video-frames", "8", "--clips", "2", "--image-size", "32"]
    done = _run_hidden(arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    for figure in ("JPEG frames, decode=workers: ", "JPEG frames, decode=device: ",
                   "JPEG flow L=5, decode=device: "):
        assert f"{figure}" in done.stdout and "clips/s with 1 workers" in done.stdout


def test_every_benchmark_script_imports():
    """A benchmark a later change broke fails here, not on the day its figure is wanted: every
    script's module loads (in one process: one torch import), its main left unrun."""
    code = ("import importlib, sys\n"
            "for path in sys.argv[1:]:\n"
            "    importlib.import_module('benchmarks.' + path)\n")
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
