"""A long video decoded as a stream (issue 27, "any length"): peak resident memory and wall time
for a 60-minute 320x240 video and for its first minute.

Generates the videos once into ``--cache`` (mpeg4, 25 fps, a keyframe every 250 frames as
common encoders write them, a low bit rate so that it is quick): a textured background with a
square that moves. Then, for each length, in a fresh process (so that its peak resident set is
its own), each step of ``STEPS``:

- ``decode``: the video opened (``VideoReader``: its packet index), ``--segments`` segments
  chosen from the duration (``segments_for_duration``, ``auto``: one per second), their centre
  frames (``eval_starts``) decoded with ``stream_frames`` in chunks of ``--chunk`` and each
  chunk reduced to a number (what a backbone would keep of it is as small);
- ``decode_whole`` (``--whole``): the same frames read at once, as ``datp predict`` reads its
  sampled set today, for comparison.

Each prints the process's resident set after imports, its peak, the wall time and the speed in
multiples of real time. A ``predict`` step (the restructured ``datp predict`` on a checkpoint)
goes into ``STEPS`` beside ``decode``.

    python benchmarks/long_video.py                        # 60 min and 1 min, decode
    python benchmarks/long_video.py --whole --chunk 16     # also everything read at once
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH, FPS, GOP = 240, 320, 25, 250
LENGTHS = {"60min": 60 * 60, "1min": 60}


def say(text: str) -> None:
    print(text, flush=True)


def rss_mib() -> float:
    """The process's current resident set, MiB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the videos ------------------------------------------------------------------------------


def write_long_video(path: Path, seconds: int, *, bit_rate: int) -> None:
    """``seconds`` of 320x240 at 25 fps, encoded frame by frame (never held whole)."""
    import av

    rng = np.random.default_rng(0)
    coarse = rng.integers(40, 200, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
    background = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)  # [H, W, 3]
    partial = path.with_suffix(".partial" + path.suffix)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.gop_size, stream.bit_rate = GOP, bit_rate
        for t in range(seconds * FPS):
            frame = background.copy()
            x, y = (7 * t) % (WIDTH - 32), (3 * t) % (HEIGHT - 32)
            frame[y:y + 32, x:x + 32] = (255, (5 * t) % 256, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)


def cached_videos(cache: Path, *, bit_rate: int) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, seconds in LENGTHS.items():
        path = cache / f"long_{name}_{WIDTH}x{HEIGHT}_{bit_rate // 1000}k.avi"
        if not path.exists():
            start = time.perf_counter()
            write_long_video(path, seconds, bit_rate=bit_rate)
            say(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
                f"{time.perf_counter() - start:.0f} s")
        paths[name] = path
    return paths


# --- the steps, each run in a fresh process ----------------------------------------------------


def _sampled(reader, segments: str) -> tuple[np.ndarray, int]:
    from datp.data.sampling import eval_starts, parse_segments, segments_for_duration

    duration = reader.num_frames / reader.fps
    choice = parse_segments(segments)
    count = choice if isinstance(choice, int) else segments_for_duration(
        duration, seconds_per_segment=choice)
    return eval_starts(reader.num_frames, count), count


def decode(path: Path, *, segments: str, chunk: int) -> dict:
    from datp.data.stream import stream_frames
    from datp.data.video import VideoReader

    start = time.perf_counter()
    with VideoReader(path) as reader:
        opened = time.perf_counter() - start
        indices, count = _sampled(reader, segments)
        total = 0.0
        for part in stream_frames(reader, indices, chunk_frames=chunk):
            total += float(part.frames.mean(dtype=np.float64))
        duration = reader.num_frames / reader.fps
    return {"segments": count, "frames": int(reader.num_frames), "duration_s": duration,
            "open_s": opened, "checksum": total}


def decode_whole(path: Path, *, segments: str, chunk: int) -> dict:
    from datp.data.video import VideoReader

    with VideoReader(path) as reader:
        indices, count = _sampled(reader, segments)
        frames = reader.read(indices)
        duration = reader.num_frames / reader.fps
    return {"segments": count, "frames": int(reader.num_frames), "duration_s": duration,
            "checksum": float(frames.mean(dtype=np.float64))}


STEPS = {"decode": decode, "decode_whole": decode_whole}


def child(step: str, path: Path, segments: str, chunk: int) -> None:
    import av  # noqa: F401 - the imports' memory is the baseline, not the step's

    import datp.data.stream  # noqa: F401
    import datp.data.video  # noqa: F401

    baseline = rss_mib()
    start = time.perf_counter()
    figures = STEPS[step](path, segments=segments, chunk=chunk)
    figures.update(wall_s=time.perf_counter() - start, baseline_mib=baseline,
                   peak_mib=peak_rss_mib())
    print(json.dumps(figures))


def run_step(step: str, path: Path, segments: str, chunk: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", step, str(path), "--segments", segments,
         "--chunk", str(chunk)], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "datp-long-video")
    parser.add_argument("--segments", default="auto", help="auto, a count, or seconds (2s)")
    parser.add_argument("--chunk", type=int, default=64, help="frames decoded per chunk")
    parser.add_argument("--bit-rate", type=int, default=150_000)
    parser.add_argument("--whole", action="store_true", help="also read the frames at once")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.segments, args.chunk)
        return
    say(f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
        f"{platform.python_version()}; --segments {args.segments}, --chunk {args.chunk}")
    videos = cached_videos(args.cache, bit_rate=args.bit_rate)
    steps = ["decode"] + (["decode_whole"] if args.whole else [])
    for step in steps:
        peaks = {}
        for name, path in videos.items():
            f = run_step(step, path, args.segments, args.chunk)
            peaks[name] = f["peak_mib"]
            opened = f" ({f['open_s']:.1f} s opening)" if "open_s" in f else ""
            say(f"{step:12s} {name:5s}: {f['segments']} segments of {f['frames']} frames, "
                f"{f['wall_s']:.1f} s wall{opened}, {f['duration_s'] / f['wall_s']:.0f}x real "
                "time, "
                f"resident {f['baseline_mib']:.0f} MiB after imports, peak {f['peak_mib']:.0f} MiB")
        say(f"{step:12s} peak 60 min / 1 min: {peaks['60min'] / peaks['1min']:.3f}")


if __name__ == "__main__":
    main()
