"""A stop signal to ``datp train`` and its loader workers at once, at random moments, many times:
how many runs printed a traceback, and how each ended.

    PYTHONPATH=. python benchmarks/stop_loop.py --tries 20

Each try starts ``datp train`` (a tiny synthetic benchmark, 2 loader workers, 50 short epochs)
in a process group of its own and sends SIGUSR1 to the whole group (what ``scancel --signal``
and Slurm's pre-emption do) after a random 7 to 25 s: during the set-up, a step, the workers'
start at an epoch's beginning or an evaluation. A run stopped cleanly exits 75 with one line.
Prints one line per try and the count of tracebacks (``tests/engine/test_stop_signals.py``
holds each kind of moment in a test; this loop finds the ones in between).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from datp.data.synthetic import SynthConfig, generate

    chance = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="datp-stop-") as folder:
        root = generate(SynthConfig(classes=3, videos_per_class=6, clips_per_group=2, frames=16,
                                    height=24, width=24), Path(folder) / "data")
        config = Path(folder) / "rgb.toml"
        config.write_text(
            f'[data]\nroot = "{root}"\nimage_size = 24\nresize_short = 24\nnum_segments = 3\n'
            'test_segments = 3\nworkers = 2\n[model]\nbackbone = "small_cnn"\n'
            'partial_bn = false\n[train]\nepochs = 50\nbatch_size = 2\nlr_steps = [40]\n'
            'device = "cpu"\n')
        tracebacks, endings = 0, {}
        for attempt in range(args.tries):
            process = subprocess.Popen(
                [sys.executable, "-m", "datp", "train", str(config), "--out",
                 str(Path(folder) / f"run{attempt}"), "--no-progress"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            time.sleep(chance.uniform(7, 25))
            os.killpg(process.pid, signal.SIGUSR1)
            _, err = process.communicate(timeout=300)
            printed = "Traceback" in err or "Exception ignored" in err
            tracebacks += printed
            endings[process.returncode] = endings.get(process.returncode, 0) + 1
            print(f"try {attempt}: exit {process.returncode}"
                  + (", a traceback:\n" + err[-2000:] if printed else ", one line"), flush=True)
    print(f"{tracebacks} of {args.tries} with a traceback; exits {endings}", flush=True)


if __name__ == "__main__":
    main()
