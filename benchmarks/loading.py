"""DataLoader throughput at N = 10: video files, JPEG frame folders and TSN flow folders, with
JPEG folders decoded in the loader workers or on the device (``data.decode``).

Writes its own data: JPEG frame and flow folders (320x240, encoded with torchvision, so neither
PyAV, OpenCV nor zstandard is needed: it runs on the GPU image) and, with ``--video``, a
UCF101-like set of mpeg4 files (needs PyAV). Prints each figure as soon as it is measured:

- loader CPU milliseconds per clip, in one process (``time.process_time``, one thread): the item
  (workers' part) and, for ``decode=device``, the batch decode on ``--device`` (with the CPU
  standing in for a GPU, what ``datp train --set data.decode=device`` runs there);
- clips/s of a DataLoader with each ``--workers`` count, the batch made ready on ``--device``
  (uint8, decoded and cropped there for ``decode=device``), timed for ``--seconds`` after every
  worker has delivered a batch, videos drawn with replacement so that every worker works;
- bytes per clip that cross from the loader to the model;
- ``--device cuda``: JPEG decode images/s on the device, batches of ``--jpeg-batch``;
- ``--video``: ms per clip with the file opened per clip vs kept open (``OpenReaders``).

    python benchmarks/loading.py                                  # CPU: frames and flow
    python benchmarks/loading.py --video --uint8                  # also video files
    python benchmarks/loading.py --device cuda --workers 1,8,15 --batch-size 32  # GPU host
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from datp.config import DataConfig
from datp.data.build import build_dataset
from datp.data.dataset import collate_videos
from datp.data.device_decode import EncodedBatch, decode_batch, decode_jpegs

HEIGHT, WIDTH = 240, 320


def say(text: str) -> None:
    print(text, flush=True)


def _smooth(generator: torch.Generator, count: int, channels: int, grid: tuple[int, int],
            mean: float, spread: float) -> torch.Tensor:
    coarse = torch.randn((count, channels, *grid), generator=generator) * spread + mean
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bicubic")


def smooth_flow(count: int, *, seed: int = 0) -> np.ndarray:
    """uint8 ``[count, 2, 240, 320]`` quantized flow fields, smooth like TV-L1 output."""
    fields = _smooth(torch.Generator().manual_seed(seed), count, 2, (8, 10), 128, 12)
    return fields.clamp(0, 255).round().to(torch.uint8).numpy()


def jpeg_pool(count: int, *, gray: bool, seed: int = 0) -> list[bytes]:
    """``count`` distinct 320x240 JPEGs (quality 90): textured frames with a moving square, or
    smooth quantized flow fields like TV-L1 output (noise would make decoding unrealistically
    slow)."""
    from torchvision.io import encode_jpeg

    generator = torch.Generator().manual_seed(seed)
    if gray:
        images = _smooth(generator, count, 1, (8, 10), 128, 12)
    else:
        images = _smooth(generator, count, 3, (12, 16), 120, 50)
        images += torch.randn(images.shape, generator=generator) * 6  # fine texture
        for t in range(count):
            y, x = (7 * t) % (HEIGHT - 40), (11 * t) % (WIDTH - 40)
            images[t, :, y : y + 40, x : x + 40] = torch.tensor([250.0, 80, 30]).view(3, 1, 1)
    images = images.clamp(0, 255).round().to(torch.uint8)
    with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its image codecs
        warnings.simplefilter("ignore", DeprecationWarning)
        return [bytes(encode_jpeg(image, quality=90).numpy()) for image in images]


def write_jpeg_folders(root: Path, *, videos: int, frames: int, classes: int = 4) -> None:
    """``root/rawframes/train/c<k>/v<i>/img_%05d.jpg`` and
    ``root/flow/c<k>/v<i>/flow_[xy]_%05d.jpg`` (frames - 1 fields), each video a different run
    through a pool of distinct JPEGs."""
    rgb, flow = jpeg_pool(64, gray=False), jpeg_pool(64, gray=True, seed=1)
    for v in range(videos):
        stem = Path(f"c{v % classes}") / f"v{v:04d}"
        frame_folder = root / "rawframes" / "train" / stem
        frame_folder.mkdir(parents=True)
        (root / "flow" / stem).mkdir(parents=True)
        for t in range(1, frames + 1):
            (frame_folder / f"img_{t:05d}.jpg").write_bytes(rgb[(5 * v + t) % 64])
            if t < frames:
                for axis, shift in (("x", 0), ("y", 32)):
                    (root / "flow" / stem / f"flow_{axis}_{t:05d}.jpg").write_bytes(
                        flow[(3 * v + t + shift) % 64])


def ready(batch: dict, device: torch.device) -> int:
    """Make the batch's inputs ready on ``device`` as the model would get them; returns clips."""
    inputs = batch["inputs"]
    if isinstance(inputs, EncodedBatch):
        inputs = decode_batch(inputs, device)
    else:
        inputs = inputs.to(device, non_blocking=True)
    return inputs.shape[0]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_ms_per_clip(dataset, *, device: torch.device, batch_size: int, clips: int):
    """(worker ms, device-side ms) per clip in this process: building the items, then making
    their batch ready on ``device`` (CPU time on a CPU, wall time on a GPU)."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    worker = device_side = 0.0
    done = 0
    while done < clips:
        start = time.process_time()
        items = [dataset[(done + i) % len(dataset)] for i in range(batch_size)]
        worker += time.process_time() - start
        batch = collate_videos(items)
        start = clock()
        ready(batch, device)
        synchronize(device)
        device_side += clock() - start
        done += batch_size
    return 1e3 * worker / done, 1e3 * device_side / done


def bytes_per_clip(dataset) -> float:
    inputs = collate_videos([dataset[0]])["inputs"]
    if isinstance(inputs, EncodedBatch):
        pixels = inputs.clips[0].pixels
        return float(len(inputs.data) if pixels is None else pixels.numel())
    return float(inputs.numel() * inputs.element_size())


def loader_rate(dataset, *, workers: int, batch_size: int, seconds: float,
                device: torch.device) -> float:
    """clips/s ready on ``device``, timed for ``seconds`` after each worker delivered a batch;
    videos are drawn with replacement, so that no worker runs out of work."""
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10**7)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        collate_fn=collate_videos, drop_last=True, pin_memory=device.type == "cuda",
    )
    iterator = iter(loader)
    for _ in range(max(workers, 1)):  # every worker started and delivered once
        ready(next(iterator), device)
    synchronize(device)
    seen, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        seen += ready(next(iterator), device)
    synchronize(device)
    rate = seen / (time.perf_counter() - start)
    del iterator, loader
    return rate


def jpeg_decode_rate(device: torch.device, *, batch: int, gray: bool, seconds: float) -> float:
    """Images/s of ``decode_jpeg`` on ``device`` over lists of ``batch`` 320x240 JPEGs."""
    pool = jpeg_pool(64, gray=gray, seed=2)
    files = [torch.frombuffer(bytearray(pool[i % len(pool)]), dtype=torch.uint8)
             for i in range(batch)]
    decode_jpegs(files, gray=gray, device=device)  # warm-up (nvjpeg handles)
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        decode_jpegs(files, gray=gray, device=device)
        count += batch
    synchronize(device)
    return count / (time.perf_counter() - start)


def video_open_cost(root: Path, items, *, segments: int) -> tuple[float, float]:
    """ms per clip reading ``segments`` random frames: the file opened per clip vs kept open."""
    from datp.data.sampling import train_starts
    from datp.data.video import OpenReaders, VideoReader

    rng = np.random.default_rng(0)
    paths = [root / "videos" / item.path for item in items]
    start = time.perf_counter()
    for path in paths:
        with VideoReader(path) as reader:
            reader.read(train_starts(reader.num_frames, segments, rng=rng))
    per_clip = (time.perf_counter() - start) / len(paths)
    readers = OpenReaders(capacity=len(paths))
    for path in paths:  # open once
        readers.open(path)
    start = time.perf_counter()
    for path in paths:
        reader = readers.open(path)
        reader.read(train_starts(reader.num_frames, segments, rng=rng))
    kept = (time.perf_counter() - start) / len(paths)
    readers.close()
    return 1e3 * per_clip, 1e3 * kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where decode=device decodes: cpu, cuda")
    parser.add_argument("--videos", type=int, default=48,
                        help="JPEG frame (and flow) folders; loaders draw them with replacement")
    parser.add_argument("--video-frames", type=int, default=90)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--flow-length", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2 or 1,8,15")
    parser.add_argument("--decode", default="workers,device")
    parser.add_argument("--modalities", default="rgb,flow")
    parser.add_argument("--clips", type=int, default=32, help="clips per CPU-ms measurement")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed per loader setting")
    parser.add_argument("--jpeg-batch", type=int, default=320)
    parser.add_argument("--video", action="store_true", help="also video files (needs PyAV)")
    parser.add_argument("--uint8", action="store_true",
                        help="video files: also uint8 clips, normalized on the device")
    parser.add_argument("--keep", default="", help="write the data here and keep it")
    args = parser.parse_args()

    torch.set_num_threads(1)  # as in a DataLoader worker
    device = torch.device(args.device)
    worker_counts = [int(w) for w in args.workers.split(",")]
    places = args.decode.split(",")
    cpus = os.cpu_count() or 1
    say(f"machine: {platform.machine()}, {cpus} CPUs, torch {torch.__version__}, device "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; N = "
        f"{args.segments}, L = {args.flow_length}, crop {args.image_size}, batch "
        f"{args.batch_size}")
    if device.type == "cuda":
        for gray in (False, True):
            rate = jpeg_decode_rate(device, batch=args.jpeg_batch, gray=gray, seconds=3)
            say(f"JPEG decode on {device}, 320x240 {'gray' if gray else 'RGB'}, batches of "
                f"{args.jpeg_batch}: {rate:.0f} images/s")

    root = Path(args.keep or tempfile.mkdtemp(prefix="datp-loading-"))
    try:
        videos = args.videos
        start = time.perf_counter()
        write_jpeg_folders(root, videos=videos, frames=args.video_frames)
        say(f"data: {videos} JPEG frame folders and flow folders, 320x240, {args.video_frames} "
            f"frames, quality 90; written in {time.perf_counter() - start:.1f} s")
        for modality in args.modalities.split(","):
            name = "JPEG frames" if modality == "rgb" else f"JPEG flow L={args.flow_length}"
            for place in places:
                dataset = build_dataset(DataConfig(
                    root=str(root), format="folders", source="frames", modality=modality,
                    num_segments=args.segments, flow_length=args.flow_length,
                    image_size=args.image_size, resize_short=256, normalize_on_device=True,
                    decode=place), subset="train", device=str(device))
                label = f"{name}, decode={place}"
                worker_ms, device_ms = cpu_ms_per_clip(
                    dataset, device=device, batch_size=args.batch_size, clips=args.clips)
                side = "CPU" if device.type == "cpu" else f"{device} wall"
                say(f"{label}: {worker_ms + (device_ms if device.type == 'cpu' else 0):.1f} "
                    f"CPU ms per clip (workers' part {worker_ms:.1f}, {side} part "
                    f"{device_ms:.1f}); {bytes_per_clip(dataset) / 2**10:.0f} KiB per clip "
                    "from the loader")
                for workers in worker_counts:
                    rate = loader_rate(dataset, workers=workers, batch_size=args.batch_size,
                                       seconds=args.seconds, device=device)
                    say(f"{label}: {rate:.1f} clips/s with {workers} workers, ready on "
                        f"{device}")
        if args.video:
            run_video(root / "video", args, worker_counts, device)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def run_video(root: Path, args, worker_counts: list[int], device: torch.device) -> None:
    """Video files: open per clip vs kept open, and loader clips/s (float32 and uint8)."""
    from datp.data.splits import read_ucf101
    from datp.data.synthetic import SynthConfig, generate

    start = time.perf_counter()
    generate(SynthConfig(classes=4, videos_per_class=8, frames=150, height=HEIGHT, width=WIDTH),
             root)
    items = read_ucf101(root / "ucfTrainTestlist", split=1, subset="train").items
    say(f"data: {len(items)} training videos, 320x240, 150 frames, mpeg4 GOP 12; written in "
        f"{time.perf_counter() - start:.1f} s")
    per_clip, kept = video_open_cost(root, items, segments=args.segments)
    say(f"video, {args.segments} random frames: {per_clip:.1f} ms per clip opened per clip, "
        f"{kept:.1f} ms kept open")
    for raw in (False, True) if args.uint8 else (False,):
        dataset = build_dataset(DataConfig(root=str(root), num_segments=args.segments,
                                           image_size=args.image_size, resize_short=256,
                                           normalize_on_device=raw, decode="workers"),
                                subset="train", device=str(device))
        for workers in worker_counts:
            rate = loader_rate(dataset, workers=workers, batch_size=args.batch_size,
                               seconds=args.seconds, device=device)
            say(f"video, {'uint8' if raw else 'float32'}: {rate:.1f} clips/s with {workers} "
                f"workers, {bytes_per_clip(dataset) / 2**20:.2f} MiB per clip")


if __name__ == "__main__":
    main()
