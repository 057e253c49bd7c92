"""Training a head on cached features: seconds per epoch for a UCF101-sized set, and the peak
resident memory, which the memory map keeps far below the set's size (issue 26).

    PYTHONPATH=. python benchmarks/features_head.py                       # 13,320 x 200 x 768
    PYTHONPATH=. python benchmarks/features_head.py --videos 1000 --epochs 1   # a quick look

The set is generated once into ``--cache`` (about 4.1 GB for the default size) in datp's own
feature format, written by ``datp.features.storage.write_features`` (float16, a record with the
times of every step beside each file, the folder's record): 101 classes, 13,320 videos of
T = 200 steps of D = 768 (25 fps, 8 s), each a class prototype over a fifth of its steps plus
noise, so that the head has something to learn. Later runs find it there and skip generating.

Each epoch is what training on features does, end to end: ``FeatureDataset`` (TSN sampling of
N = 25 steps per video from the memory-mapped files, times from the records) through a
DataLoader into ``FeatureHead`` with DATP's mixture of Gaussians (K = 2) reading the feature
sequence, SGD with momentum, the loss on ``log_probs``. Goal: <= 10 s per epoch on the 2-core
CPU; peak RSS bounded by the memory map, not by the 4 GB on disk.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from datp.config import ModelConfig, PoolingConfig
from datp.data.dataset import collate_videos
from datp.data.feature_dataset import feature_dataset
from datp.data.features import FOLDER_RECORD, open_feature_set
from datp.data.splits import read_list_file
from datp.features.storage import record_folder, write_features
from datp.models.build import build_feature_head

CLASSES = 101
FPS = 25.0
SETTINGS = {"benchmark": "features_head", "grid": {"fps": None, "window": 1, "stride": 1}}


def generate(cache: Path, *, videos: int, steps: int, channels: int) -> Path:
    """The set in ``cache`` (made once) and its list file."""
    listing = cache / f"train_{videos}x{steps}x{channels}.txt"
    if listing.is_file():
        return listing
    settings = {**SETTINGS, "size": [videos, steps, channels]}
    if (cache / FOLDER_RECORD).is_file():
        raise SystemExit(f"{cache} holds another size; give another --cache")
    record_folder(cache, settings)
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((CLASSES, channels), dtype=np.float32)
    times = [round((i + 0.5) / FPS, 6) for i in range(steps)]
    lines, started = [], time.perf_counter()
    for i in range(videos):
        label = i % CLASSES
        x = rng.standard_normal((steps, channels), dtype=np.float32)
        start = int(rng.integers(0, steps - steps // 5))
        x[start:start + steps // 5] += prototypes[label]
        name = f"c{label:03d}/v_{i:05d}"
        write_features(cache / f"{name}.npy", x,
                       {"settings": settings, "times": times, "duration": steps / FPS},
                       dtype="float16")
        lines.append(f"{name}.avi {label}\n")
        if (i + 1) % 1000 == 0:
            print(f"  generated {i + 1}/{videos} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    listing.write_text("".join(lines))
    return listing


def workers_cpu_seconds() -> float:
    """CPU seconds used so far by this process's live children (the loader's workers; Linux)."""
    total = 0.0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident set (VmHWM) of this process and of its largest live child (a loader
    worker), MiB; Linux."""
    def peak(pid: int | str) -> float:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0.0
        line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
        return int(line.split()[1]) / 1024

    children = [peak(child.pid) for child in multiprocessing.active_children()]
    return peak("self"), max(children, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/datp_bench_features"))
    parser.add_argument("--videos", type=int, default=13_320)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--segments", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    parser.add_argument("--pooling", default="datp", choices=("datp", "average"))
    parser.add_argument("--aux-input", default="sequence", choices=("sequence", "scores"),
                        help="what DATP's auxiliary net reads: the features or the softmax scores")
    parser.add_argument("--layout", default="sequence", choices=("sequence", "conv"),
                        help="the auxiliary net's first layers: in the features' own [B, N, D] "
                        "layout as a matrix product (what datp train builds for features) or "
                        "GroupNorm and Conv1d on [B, D, N] (the TSN paths', as measured before)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch "
          f"{torch.__version__}")
    listing = generate(args.cache, videos=args.videos, steps=args.steps, channels=args.channels)
    on_disk = sum(p.stat().st_size for p in args.cache.rglob("*.npy")) / 2**30
    split = read_list_file(listing)
    split.classes = [f"c{c:03d}" for c in range(CLASSES)]
    dataset = feature_dataset(split, features=open_feature_set(args.cache),
                              num_segments=args.segments, train=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        collate_fn=collate_videos, persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    head = build_feature_head(
        ModelConfig(dropout=0.5),
        PoolingConfig(kind=args.pooling, pool="probabilities", aux_input=args.aux_input,
                      generator="mog", num_gaussians=2),
        num_classes=CLASSES, feature_channels=args.channels, num_segments=args.segments, seed=0)
    for module in head.modules():  # the layout to measure
        if hasattr(module, "sequence_layout"):
            module.sequence_layout = args.layout == "sequence"
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    described = (f" (MoG K = 2, reading the {args.aux_input}, {args.layout} layout)"
                 if args.pooling == "datp" else "")
    print(f"{len(dataset)} videos x T = {args.steps} x D = {args.channels} float16 "
          f"({on_disk:.2f} GiB on disk), N = {args.segments}, batch {args.batch_size}, "
          f"{args.workers} loader worker(s), {args.pooling} pooling{described}; "
          "RSS before "
          f"the first batch {peak_rss_mib()[0]:.0f} MiB (torch and the model)")
    for epoch in range(1, args.epochs + 1):
        head.train()
        started, cpu, workers_cpu = time.perf_counter(), time.process_time(), workers_cpu_seconds()
        correct = seen = 0
        loading = 0.0
        mark = time.perf_counter()
        for batch in loader:
            loading += time.perf_counter() - mark
            out = head(batch["inputs"], batch["times"])
            loss = torch.nn.functional.nll_loss(out.log_probs, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((out.log_probs.argmax(1) == batch["label"]).sum())
            seen += len(batch["label"])
            mark = time.perf_counter()
        seconds = time.perf_counter() - started
        cpu, workers_cpu = time.process_time() - cpu, workers_cpu_seconds() - workers_cpu
        own, children = peak_rss_mib()
        print(f"epoch {epoch}: {seconds:.2f} s ({seen / seconds:.0f} videos/s; CPU: this "
              f"process {cpu:.1f} s, the loader's workers {workers_cpu:.1f} s; "
              f"{loading:.2f} s waiting for the loader), train accuracy "
              f"{100 * correct / seen:.1f} %, peak RSS {own:.0f} MiB (largest worker "
              f"{children:.0f} MiB)", flush=True)


if __name__ == "__main__":
    main()
