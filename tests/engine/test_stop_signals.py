"""A stop signal to every process of a job (what ``scancel`` and Slurm's pre-emption send), landing
at each kind of moment of ``datp train``: the run stops with status 75 and not a word besides its
own, every time. Each case runs ``datp train`` in a process group of its own and sends SIGUSR1
to the whole group from inside the process at a chosen moment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_train import _synthetic

CHILD = """
import os, signal, sys
import multiprocessing.process
import datp.engine.build, datp.engine.train
from datp.cli import main

def group_signal_at(owner, name, call):
    original, calls = getattr(owner, name), []
    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            os.killpg(os.getpgrp(), signal.SIGUSR1)
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)

moment = sys.argv[1]
if moment == "setup":  # while the data are read
    group_signal_at(datp.engine.build, "build_data_bundle", 1)
elif moment == "fork":  # between the forks of the loader's two workers, inside its iterator
    group_signal_at(multiprocessing.process.BaseProcess, "start", 2)
elif moment == "step":  # inside the 3rd training step
    group_signal_at(datp.engine.train, "training_step", 3)
elif moment == "evaluation":  # as the evaluation starts
    group_signal_at(datp.engine.train, "collect_sharded", 1)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["setup", "fork", "step", "evaluation"])
def test_a_stop_to_every_process_ends_the_run_without_a_traceback(tmp_path, moment):
    root = _synthetic(tmp_path / "data")
    config = tmp_path / "rgb.toml"
    config.write_text(
        f'[data]\nroot = "{root}"\nimage_size = 24\nresize_short = 24\nnum_segments = 3\n'
        'test_segments = 3\nworkers = 2\n[model]\nbackbone = "small_cnn"\npartial_bn = false\n'
        '[train]\nepochs = 1\nbatch_size = 2\nlr_steps = []\ndevice = "cpu"\n'
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, moment, "train", str(config), "--out",
         str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, start_new_session=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 75, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == ("stopped by SIGUSR1; continue with --resume (or "
                                            "--resume auto)")
