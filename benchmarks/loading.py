"""DataLoader throughput at N = 10 beside the sequential decode floor, on generated 320x240 data.

Writes a UCF101-like synthetic dataset (mpeg4, GOP 12, 320x240, 150 frames = 6 s at 25 fps),
optionally JPEG frame folders and quantized flow folders of the same videos, then prints:

- the decode floor: every frame of every video decoded sequentially, frames/s, one process;
- clips/s of a DataLoader over the training set (TSN sampling, multi-scale crop to 224, flip,
  normalization) with 0 (in-process), 1, 2 and all workers, for each source.

    python benchmarks/loading.py                      # video files
    python benchmarks/loading.py --frames --flow      # also JPEG frames and flow stacks (L = 5)
    python benchmarks/loading.py --uint8              # also uint8 clips, normalized on the device
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datp.data.dataset import build_dataset, collate_videos
from datp.data.frames import write_flow, write_frames
from datp.data.splits import read_ucf101
from datp.data.synthetic import SynthConfig, generate
from datp.data.video import VideoReader


def smooth_flow(count: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[count, 2, 240, 320]`` quantized fields, smooth like real TV-L1 output (random
    fields would make the JPEGs unrealistically expensive to decode)."""
    coarse = torch.from_numpy(rng.normal(128, 12, size=(count, 2, 8, 10)).astype(np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(240, 320), mode="bicubic")
    return fine.clamp(0, 255).round().to(torch.uint8).numpy()


def decode_floor(root: Path, items) -> tuple[float, int]:
    """(frames/s, frames) decoding every frame of the videos sequentially."""
    frames = 0
    start = time.perf_counter()
    for item in items:
        with VideoReader(root / "videos" / item.path) as reader:
            frames += len(reader.read_all())
    return frames / (time.perf_counter() - start), frames


def loader_rate(dataset, *, workers: int, batch_size: int, clips: int) -> float:
    """clips/s over at least ``clips`` clips, after one warm-up batch (worker start-up)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
        collate_fn=collate_videos, persistent_workers=workers > 0,
    )
    iterator = iter(loader)
    next(iterator)
    seen, start = 0, time.perf_counter()
    while seen < clips:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        seen += batch["inputs"].shape[0]
    rate = seen / (time.perf_counter() - start)
    del iterator, loader
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--videos-per-class", type=int, default=8)
    parser.add_argument("--video-frames", type=int, default=150)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--flow-length", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=96, help="clips timed per setting")
    parser.add_argument("--frames", action="store_true", help="also JPEG frame folders")
    parser.add_argument("--flow", action="store_true", help="also flow folders (random fields)")
    parser.add_argument("--keep", default="", help="write the data here and keep it")
    parser.add_argument("--uint8", action="store_true",
                        help="also loaders that leave clips uint8 (data.normalize_on_device)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # as in a DataLoader worker; the main process only collates
    root = Path(args.keep or tempfile.mkdtemp(prefix="datp-loading-"))
    try:
        start = time.perf_counter()
        config = SynthConfig(classes=args.classes, videos_per_class=args.videos_per_class,
                             frames=args.video_frames, height=240, width=320)
        generate(config, root)
        items = read_ucf101(root / "ucfTrainTestlist", split=1, subset="train").items
        print(f"data: {len(items)} training videos, 320x240, {args.video_frames} frames, "
              f"mpeg4 GOP 12; written in {time.perf_counter() - start:.1f} s")
        if args.frames or args.flow:
            start = time.perf_counter()
            rng = np.random.default_rng(0)
            for item in items:
                stem = item.path[: -len(".avi")]
                with VideoReader(root / "videos" / item.path) as reader:
                    frames = reader.read_all()
                if args.frames:
                    write_frames(root / "rawframes" / stem, frames, quality=90)
                if args.flow:
                    write_flow(root / "flow" / stem, smooth_flow(len(frames) - 1, rng),
                               quality=90)
            print(f"frame / flow folders written in {time.perf_counter() - start:.1f} s")

        cpus = os.cpu_count() or 1
        print(f"machine: {platform.machine()}, {cpus} CPUs, torch {torch.__version__}, "
              f"N = {args.segments}, crop {args.image_size}, batch {args.batch_size}")
        rate, frames = decode_floor(root, items)
        print(f"decode floor (sequential PyAV, rgb24): {rate:.0f} frames/s over {frames} frames "
              f"= {rate / args.segments:.1f} clips/s if each clip cost only its {args.segments} "
              f"frames")
        settings = [("video", "rgb", "video")]
        if args.frames:
            settings.append(("frames", "rgb", "JPEG frames"))
        if args.flow:
            settings.append(("frames", "flow", f"JPEG flow L={args.flow_length}"))
        worker_counts = sorted({0, 1, 2, cpus})
        print(f"{'source, loader output':<26}"
              + "".join(f"{f'{w} workers':>12}" for w in worker_counts) + "   (clips/s)")
        outputs = (False, True) if args.uint8 else (False,)
        for source, modality, name in settings:
            for raw in outputs:
                dataset = build_dataset(
                    root=root, source=source, modality=modality, num_segments=args.segments,
                    flow_length=args.flow_length, image_size=args.image_size, resize_short=256,
                    normalize_on_device=raw,
                )
                rates = [loader_rate(dataset, workers=w, batch_size=args.batch_size,
                                     clips=args.clips) for w in worker_counts]
                clip = dataset[0]["inputs"]
                label = f"{name}, {'uint8' if raw else 'float32'}"
                print(f"{label:<26}" + "".join(f"{r:12.1f}" for r in rates)
                      + f"   {clip.numel() * clip.element_size() / 2**20:.2f} MiB per clip")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
