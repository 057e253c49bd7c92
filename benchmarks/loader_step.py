"""The real training step fed by the real loader (issue 29): clips/s the loader makes ready against
clips/s the step eats, on a UCF101-layout JPEG frame set this script writes (no PyAV needed).

    PYTHONPATH=. python benchmarks/loader_step.py --device cuda --compile   # resnet34, B = 32
    PYTHONPATH=. python benchmarks/loader_step.py                           # CPU rehearsal, tiny

Writes ``--classes`` x ``--videos-per-class`` frame folders of ``--frames`` 320x240 JPEGs
(quality 90, as UCF101's frames are extracted) in UCF101's layout (``ucfTrainTestlist/``,
``rawframes/<Class>/v_<Class>_gXX_cYY/img_00001.jpg``), then builds the dataset, collate,
model, optimizer and step as ``datp train`` does (``data.decode = "auto"``: on CUDA the JPEGs
are decoded on the GPU, a batch ahead in a thread, by ``decode_ahead``), and times:

- step: the training step alone (average pooling, the cheapest: the hardest for the loader to
  keep up with, and train_step.py's graph, which its compile left in inductor's cache) on one
  batch kept on the device (compute-bound), median of ``--repeats``;
- loader: batches the loader makes ready on the device (read by the workers, decoded and
  cropped), no step, for ``--seconds``;
- fed: the step fed by the loader, as ``datp train`` runs, for ``--seconds``.

The loader's workers persist and read videos drawn with replacement, so none runs out of work.
``FIGURE`` lines (``benchmarks/gpu_plan.py`` reads them) give the three rates and the loader's
and the fed step's share of the step's rate (goal on one H100: the loader >= 90 %).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from benchmarks.loading import jpeg_pool
from benchmarks.train_step import VARIANTS, engine_step, timed
from datp.config import load_config
from datp.data.device_decode import decode_ahead


def write_ucf101_frames(root: Path, *, classes: int, videos_per_class: int, frames: int) -> None:
    """UCF101's layout with JPEG frame folders: every video a different run through a pool of
    64 distinct 320x240 frames; the split's train and test lists."""
    pool = jpeg_pool(64, gray=False)
    names = [f"Class{c:02d}" for c in range(classes)]
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, 1)))
    train, test = [], []
    for c, name in enumerate(names):
        for v in range(videos_per_class):
            video = f"{name}/v_{name}_g{v // 4 + 1:02d}_c{v % 4 + 1:02d}"
            folder = root / "rawframes" / video
            folder.mkdir(parents=True)
            for t in range(1, frames + 1):
                (folder / f"img_{t:05d}.jpg").write_bytes(pool[(7 * v + 3 * c + t) % len(pool)])
            train.append(f"{video}.avi {c + 1}\n")
            test.append(f"{video}.avi\n")
    (lists / "trainlist01.txt").write_text("".join(train))
    (lists / "testlist01.txt").write_text("".join(test))


def engine_loader(config, *, device: torch.device, compiled: bool,
                  ) -> tuple[torch.utils.data.DataLoader, Callable[[dict], None]]:
    """The training loader and step ``config`` makes, through the engine's public builders (the
    one place this script calls them, to adapt when they change)."""
    from datp.engine.build import build_data_bundle

    data = build_data_bundle(config, with_test=False)
    workers = config.data.workers
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=config.train.batch_size, num_workers=workers, drop_last=True,
        sampler=torch.utils.data.RandomSampler(data.train, replacement=True, num_samples=10**7),
        collate_fn=data.collate, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    step = engine_step(config, num_classes=len(data.classes), device=device, compiled=compiled)
    return loader, step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _on_device(batch: dict, device: torch.device) -> dict:
    """The batch as the step gets it, its clips on ``device`` (decoded there already, or
    copied: decode in the workers)."""
    return {**batch, "inputs": batch["inputs"].to(device, non_blocking=True)}


def rate(batches: Iterator[dict], work: Callable[[dict], None], *, seconds: float,
         device: torch.device) -> float:
    """Clips/s of ``work`` over the batches that ``seconds`` allow (at least 3)."""
    _sync(device)
    clips, count, start = 0, 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        batch = next(batches)
        work(batch)
        clips += len(batch["label"])
        count += 1
    _sync(device)
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--backbone")
    parser.add_argument("--size", type=int, help="crop side (224 on CUDA, 64 on a CPU)")
    parser.add_argument("--batch", type=int, help="videos per batch (32 on CUDA, 2 on a CPU)")
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--workers", type=int, help="loader workers (8 on CUDA, 1 on a CPU)")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--videos-per-class", type=int, default=12)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0, help="per timed phase")
    parser.add_argument("--keep", default="", help="write the frames here and keep them")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    backbone = args.backbone or ("resnet34" if cuda else "resnet18")
    size = args.size or (224 if cuda else 64)
    batch = args.batch or (32 if cuda else 2)
    workers = args.workers if args.workers is not None else (8 if cuda else 1)
    root = Path(args.keep or tempfile.mkdtemp(prefix="datp-loader-step-"))
    try:
        start = time.perf_counter()
        write_ucf101_frames(root, classes=args.classes, videos_per_class=args.videos_per_class,
                            frames=args.frames)
        name = torch.cuda.get_device_name(device) if cuda else platform.machine()
        print(f"device {device} ({name}), {os.cpu_count()} CPUs, torch {torch.__version__}; "
              f"{backbone} at {size} px, B={batch} x N={args.segments}, {workers} workers, "
              f"amp={'bf16' if cuda else 'none'}, compile={args.compile}; "
              f"{args.classes * args.videos_per_class} videos of {args.frames} JPEG frames "
              f"(320x240) written in {time.perf_counter() - start:.1f} s", flush=True)
        config = load_config(None, [
            f"data.root={root}", "data.format=ucf101", "data.source=frames", "data.decode=auto",
            f"data.workers={workers}", f"data.num_segments={args.segments}",
            f"data.image_size={size}", "data.resize_short=256", f"model.backbone={backbone}",
            "model.partial_bn=false", f"train.batch_size={batch}", f"train.device={device}",
            f"train.amp={'bf16' if cuda else 'none'}", f"train.channels_last={str(cuda).lower()}",
            "train.lr=0.001", *VARIANTS["average"][1],  # train_step.py's first: one compile
        ])
        loader, step = engine_loader(config, device=device, compiled=args.compile)
        batches = decode_ahead(iter(loader), device)  # as datp train reads its loader
        fixed = _on_device(next(batches), device)
        began = time.perf_counter()
        step(fixed)  # compiles, when compiled
        _sync(device)
        print(f"  first step {time.perf_counter() - began:.1f} s", flush=True)
        for _ in range(max(workers, 1)):  # every worker started and delivered once
            next(batches)
        per_step = statistics.median(timed(step, fixed, device) for _ in range(args.repeats))
        compute = batch / per_step
        print(f"  step alone (compute-bound): {compute:9.1f} clips/s", flush=True)
        ready = rate(batches, lambda b: _on_device(b, device), seconds=args.seconds,
                     device=device)
        print(f"  loader alone, ready on {device}: {ready:9.1f} clips/s = "
              f"{100 * ready / compute:.0f} % of the step's", flush=True)
        fed = rate(batches, lambda b: step(_on_device(b, device)), seconds=args.seconds,
                   device=device)
        print(f"  step fed by the loader:  {fed:9.1f} clips/s = {100 * fed / compute:.0f} % of "
              "the step's", flush=True)
        for name, value, unit in (("step_clips_per_s", compute, "clips/s"),
                                  ("loader_clips_per_s", ready, "clips/s"),
                                  ("fed_step_clips_per_s", fed, "clips/s"),
                                  ("loader_vs_step_pct", 100 * ready / compute, "%"),
                                  ("fed_vs_step_pct", 100 * fed / compute, "%")):
            print(f"FIGURE {name} {value:.2f} {unit}", flush=True)
        batches.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
