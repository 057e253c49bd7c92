"""Feature extraction speed: frames/s through ``datp features``'s code path end to end (decoding,
the weights' own transform, the frozen backbone, float16 files and records written), for
resnet18 and vit_b_16 at 224 with random parameters (issue 26).

    PYTHONPATH=. python benchmarks/features_extract.py                      # CPU, 2 x 48 frames
    PYTHONPATH=. python benchmarks/features_extract.py --device cuda --dtype bf16 \\
        --videos 32 --frames 250 --decode-threads 8 --batch-size 256

Videos are generated at 320x240, 25 fps: mp4 files (MPEG-4 Part 2, GOP 12) where PyAV is
installed, else JPEG frame folders (the GPU image has no PyAV), decoded by OpenCV or Pillow;
``--source frames`` asks for frame folders anywhere. Each backbone first extracts one warm-up
video (CUDA kernels chosen, caches filled) into a folder of its own, then every video; frames/s
is frames over wall seconds, decoding included (goal on an H100: >= 2,000 for ViT-B/16 bf16).
The backbone alone (a random batch already transformed, no decoding, no writing) is printed
beside it, so what decoding and writing cost shows. ``--dtype`` is the compute precision
(float32, or bf16 autocast); the files are float16 either way.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datp.features.backbones import torchvision_backbone
from datp.features.extract import FeatureOptions, extract_features
from datp.features.grid import TimeGrid
from datp.features.sources import list_sources

FPS = 25


def frames_of(count: int, *, seed: int, height: int = 240, width: int = 320) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: a textured background and a bright square moving over it."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 160, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    for t in range(count):
        x, y = (5 * t) % (width - 40), (3 * t) % (height - 40)
        frames[t, y:y + 40, x:x + 40] = (255, (7 * t) % 256, 90)
    return frames


def make_videos(root: Path, *, videos: int, frames: int, source: str) -> str:
    """``videos`` generated videos under ``root``; returns the source kind written."""
    if source == "auto":
        try:
            import av  # noqa: F401
            source = "video"
        except ImportError:
            source = "frames"
    for i in range(videos):
        clip = frames_of(frames, seed=i)
        if source == "video":
            from datp.data.video import write_video

            write_video(root / f"c{i % 4}" / f"v{i:03d}.mp4", clip, fps=FPS)
        else:
            from datp.data.frames import write_frames

            write_frames(root / f"c{i % 4}" / f"v{i:03d}", clip)
    return source


def backbone_alone(backbone, *, device: torch.device, bf16: bool, batch: int) -> float:
    """Images/s of the network on a random batch at 224, after a warm-up."""
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        backbone.module(x)
        rounds = 3 if device.type == "cpu" else 20
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(rounds):
            backbone.module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return rounds * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet18,vit_b_16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                        help="compute precision (files are float16)")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decode-threads", type=int, default=1)
    parser.add_argument("--source", default="auto", choices=("auto", "video", "frames"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"{name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"{args.dtype}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="datp_features_bench_"))
    try:
        source = make_videos(scratch / "videos", videos=args.videos + 1, frames=args.frames,
                             source=args.source)
        base, everything = list_sources(scratch / "videos")
        warm, videos = everything[:1], everything[1:]
        print(f"{len(videos)} {source} sources of {args.frames} frames at 320x240 (+1 warm-up), "
              f"batch {args.batch_size}, {args.decode_threads} decode thread(s)", flush=True)
        for backbone_name in args.backbones.split(","):
            backbone = torchvision_backbone(backbone_name, weights=None)
            options = FeatureOptions(grid=TimeGrid(), dtype="float16", device=args.device,
                                     precision=args.dtype, batch_size=args.batch_size,
                                     decode_threads=args.decode_threads, frame_rate=FPS)
            list(extract_features(base, scratch / f"warm_{backbone_name}", warm, backbone,
                                  options))
            started = time.perf_counter()
            results = list(extract_features(base, scratch / f"out_{backbone_name}", videos,
                                            backbone, options))
            seconds = time.perf_counter() - started
            assert all(r.status == "done" for r in results), results
            frames = sum(r.units for r in results)
            alone = backbone_alone(backbone, device=device, bf16=args.dtype == "bf16",
                                   batch=args.batch_size)
            print(f"{backbone_name}: {frames / seconds:.1f} frames/s end to end ({frames} "
                  f"frames in {seconds:.1f} s); the backbone alone {alone:.1f} images/s",
                  flush=True)
            print(f"FIGURE features_{backbone_name}_{args.dtype}_frames_per_s "
                  f"{frames / seconds:.1f} frames/s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
