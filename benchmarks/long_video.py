"""A long video decoded as a stream and predicted on (issue 27, "any length"): peak resident memory
and wall time for a 60-minute video and for its first minute (320x240 unless ``--size``).

Generates the videos once into ``--cache`` (mpeg4, 25 fps, a keyframe every 250 frames as
common encoders write them, a low bit rate so that it is quick): a textured background with a
square that moves. Then, for each length, in a fresh process (so that its peak resident set is
its own), each step of ``STEPS`` (``--steps``):

- ``decode``: the video opened (``VideoReader``: its packet index), ``--segments`` segments
  chosen from the duration (``segments_for_duration``, ``auto``: one per second), their centre
  frames (``eval_starts``) decoded with ``stream_frames`` in chunks of ``--chunk`` and each
  chunk reduced to a number (what a backbone would keep of it is as small);
- ``decode_whole`` (``--whole``): the same frames read at once, as ``datp predict`` read its
  sampled set before it streamed, for comparison;
- ``predict``: ``datp predict``'s :func:`datp.engine.predict.predict_video` with a checkpoint
  written once into ``--cache`` (untrained, the synthetic recipe's DATP MoG K = 2 on conv
  features; ``--backbone`` and ``--image-size`` choose its network), ``--segments`` from the
  duration, segments read, transformed and run through the backbone ``--chunk`` at a time,
  the pooling over all of them, detections included; "resident after imports" is then after
  torch, datp and the model are loaded.

Each prints the process's resident set after imports, its peak, the wall time (decode
included) and the speed in multiples of real time.

    python benchmarks/long_video.py                        # 60 min and 1 min, decode, predict
    python benchmarks/long_video.py --whole --chunk 16     # also everything read at once
    # the GPU figure: a 60-minute 1080p video through ResNet34 at 224 px on CUDA
    python benchmarks/long_video.py --steps predict --lengths 60min --size 1920x1080 \
        --device cuda --backbone resnet34 --image-size 224 --bit-rate 2000000
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

FPS, GOP = 25, 250
LENGTHS = {"60min": 60 * 60, "1min": 60}


def say(text: str) -> None:
    print(text, flush=True)


def rss_mib() -> float:
    """The process's current resident set, MiB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """The process's largest resident set, MiB (Linux ``VmHWM``). Not ``ru_maxrss``: Linux keeps
    that across ``exec``, so a child started by a parent holding torch and a model would report
    the parent's peak."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the videos ------------------------------------------------------------------------------


def write_long_video(path: Path, seconds: int, *, bit_rate: int, width: int, height: int,
                     repeat: int = 0) -> None:
    """``seconds`` of ``width`` x ``height`` at 25 fps, encoded frame by frame (never held
    whole); with ``repeat`` (seconds, a multiple of the keyframe interval), only that much is
    encoded and its packets copied, time-shifted, until ``seconds`` are there: a 60-minute
    1080p file in seconds instead of minutes of encoding, decoded the same way."""
    if repeat and repeat < seconds:
        if (repeat * FPS) % GOP:
            raise SystemExit(f"--repeat must be a multiple of {GOP // FPS} s (the keyframes)")
        block = path.with_name(f"block_{repeat}s_" + path.name)
        if not block.exists():
            write_long_video(block, repeat, bit_rate=bit_rate, width=width, height=height)
        _repeat_packets(block, path, copies=-(-seconds // repeat))
        return
    import av

    rng = np.random.default_rng(0)
    coarse = rng.integers(40, 200, (-(-height // 16), -(-width // 16), 3), dtype=np.uint8)
    background = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]
    side = max(32, height // 8)
    partial = path.with_suffix(".partial" + path.suffix)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size, stream.bit_rate = GOP, bit_rate
        stream.thread_type = "AUTO"
        for t in range(seconds * FPS):
            frame = background.copy()
            x, y = (7 * t) % (width - side), (3 * t) % (height - side)
            frame[y:y + side, x:x + side] = (255, (5 * t) % 256, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)


def _repeat_packets(block: Path, path: Path, *, copies: int) -> None:
    """``copies`` of ``block``'s packets one after the other, remuxed (nothing re-encoded)."""
    import av

    partial = path.with_suffix(".partial" + path.suffix)
    with av.open(str(block)) as source, av.open(str(partial), "w") as container:
        video = source.streams.video[0]
        stream = container.add_stream_from_template(video)
        packets = [p for p in source.demux(video) if p.size]  # the flush packet is empty
        span = max(p.pts for p in packets) + 1  # in the stream's time base: one frame each
        for copy in range(copies):
            for packet in packets:
                packet.pts += span if copy else 0
                packet.dts = packet.pts if packet.dts is None else packet.dts + (
                    span if copy else 0)
                packet.stream = stream
                container.mux(packet)
    partial.rename(path)


def cached_videos(cache: Path, *, bit_rate: int, size: tuple[int, int], lengths: list[str],
                  repeat: int = 0) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    width, height = size
    paths = {}
    for name in lengths:
        copied = f"_repeat{repeat}s" if repeat else ""
        path = cache / f"long_{name}_{width}x{height}_{bit_rate // 1000}k{copied}.avi"
        if not path.exists():
            start = time.perf_counter()
            write_long_video(path, LENGTHS[name], bit_rate=bit_rate, width=width, height=height,
                             repeat=repeat)
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


def decode(path: Path, *, segments: str, chunk: int, **unused) -> dict:
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


def decode_whole(path: Path, *, segments: str, chunk: int, **unused) -> dict:
    from datp.data.video import VideoReader

    with VideoReader(path) as reader:
        indices, count = _sampled(reader, segments)
        frames = reader.read(indices)
        duration = reader.num_frames / reader.fps
    return {"segments": count, "frames": int(reader.num_frames), "duration_s": duration,
            "checksum": float(frames.mean(dtype=np.float64))}


def write_checkpoint(cache: Path, *, backbone: str, image_size: int) -> Path:
    """An untrained checkpoint of the synthetic recipe (DATP MoG K = 2 on conv features,
    10 classes) with ``backbone`` at ``image_size``, saved as ``datp train`` saves one; once."""
    from datp.checkpoint import save_checkpoint
    from datp.config import load_config, to_dict
    from datp.engine.build import build_model
    from datp.engine.synthetic_runs import CONFIGS

    path = cache / f"predict_{backbone}_{image_size}.pt"
    if path.exists():
        return path
    config = load_config(CONFIGS["rgb"], [
        f"model.backbone={backbone}", 'model.pretrained=""', f"data.image_size={image_size}",
        f"data.resize_short={image_size + image_size // 7}", "data.test_segments=25"])
    classes = [f"class{c}" for c in range(10)]
    model = build_model(config, num_classes=len(classes))
    save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(config),
                           "classes": classes})
    return path


def _predict_stream(checkpoint: Path, device: str):
    from datp.engine.build import load_stream

    return load_stream(checkpoint, device=device)


def predict(path: Path, *, segments: str, chunk: int, stream, **unused) -> dict:
    from datp.data.sampling import parse_segments
    from datp.engine.predict import predict_video

    choice = parse_segments(segments)
    prediction = predict_video(
        path, [stream], chunk_segments=chunk,
        segments=choice if isinstance(choice, int) else None,
        seconds_per_segment=choice if isinstance(choice, float) else None)
    return {"segments": len(prediction.streams[0].times), "frames": prediction.num_frames,
            "duration_s": prediction.duration_s, "detections": len(prediction.detections)}


STEPS = {"decode": decode, "decode_whole": decode_whole, "predict": predict}


def child(step: str, path: Path, args: argparse.Namespace) -> None:
    import av  # noqa: F401 - the imports' memory is the baseline, not the step's

    import datp.data.stream  # noqa: F401
    import datp.data.video  # noqa: F401

    stream = None
    if step == "predict":  # torch, datp and the model: the baseline too
        import torch

        torch.set_num_threads(args.threads or torch.get_num_threads())
        stream = _predict_stream(args.checkpoint, args.device)
    baseline = rss_mib()
    start = time.perf_counter()
    figures = STEPS[step](path, segments=args.segments, chunk=args.chunk, stream=stream)
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        figures["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    figures.update(wall_s=time.perf_counter() - start, baseline_mib=baseline,
                   peak_mib=peak_rss_mib())
    print(json.dumps(figures))


def run_step(step: str, path: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", step, str(path), "--segments",
               args.segments, "--chunk", str(args.chunk), "--device", args.device,
               "--threads", str(args.threads or 0)]
    if args.checkpoint is not None:
        command += ["--checkpoint", str(args.checkpoint)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{step} on {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "datp-long-video")
    parser.add_argument("--segments", default="auto", help="auto, a count, or seconds (2s)")
    parser.add_argument("--chunk", type=int, default=64, help="frames decoded per chunk")
    parser.add_argument("--bit-rate", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=0,
                        help="encode only this many seconds (a multiple of 10) and copy them "
                        "to each length (default: encode every frame)")
    parser.add_argument("--whole", action="store_true", help="also read the frames at once")
    parser.add_argument("--steps", default="decode,predict",
                        help=f"comma separated, of {', '.join(STEPS)} (default decode,predict)")
    parser.add_argument("--lengths", default="60min,1min",
                        help=f"comma separated, of {', '.join(LENGTHS)}")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--device", default="cpu", help="predict's torch device")
    parser.add_argument("--backbone", default="small_cnn", help="predict's network")
    parser.add_argument("--image-size", type=int, default=64, help="predict's crop side")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for predict (default: torch's)")
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args)
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    steps = [s for s in args.steps.split(",") if s] + (["decode_whole"] if args.whole else [])
    lengths = [n for n in args.lengths.split(",") if n]
    unknown = [s for s in steps if s not in STEPS] + [n for n in lengths if n not in LENGTHS]
    if unknown:
        raise SystemExit(f"unknown steps or lengths: {unknown}")
    say(f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
        f"{platform.python_version()}; {width}x{height}, --segments {args.segments}, "
        f"--chunk {args.chunk}; predict: {args.backbone} at {args.image_size} px on "
        f"{args.device}")
    videos = cached_videos(args.cache, bit_rate=args.bit_rate, size=(width, height),
                           lengths=lengths, repeat=args.repeat)
    if "predict" in steps:
        args.checkpoint = write_checkpoint(args.cache, backbone=args.backbone,
                                           image_size=args.image_size)
    for step in steps:
        peaks = {}
        for name, path in videos.items():
            f = run_step(step, path, args)
            peaks[name] = f["peak_mib"]
            opened = f" ({f['open_s']:.1f} s opening)" if "open_s" in f else ""
            gpu = f", GPU peak {f['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in f else ""
            say(f"{step:12s} {name:5s}: {f['segments']} segments of {f['frames']} frames, "
                f"{f['wall_s']:.1f} s wall{opened}, {f['duration_s'] / f['wall_s']:.0f}x real "
                "time, "
                f"resident {f['baseline_mib']:.0f} MiB after imports, peak {f['peak_mib']:.0f} MiB"
                f"{gpu}")
            if step == "predict":  # the figures benchmarks/gpu_plan.py reads
                say(f"FIGURE predict_{name}_{height}p_s {f['wall_s']:.2f} s")
                say(f"FIGURE predict_{height}p_x_realtime {f['duration_s'] / f['wall_s']:.1f} x")
        if len(peaks) == 2:
            say(f"{step:12s} peak 60 min / 1 min: {peaks['60min'] / peaks['1min']:.3f}")


if __name__ == "__main__":
    main()
