"""``datp flow DATASET OUT``: TV-L1 optical flow for every video of a dataset folder."""

from __future__ import annotations

import argparse
import time

from datp.commands.options import positive_int
from datp.flow import BACKEND_NAMES

BACKEND_HELP = (
    "torch: our TV-L1 in PyTorch (CUDA when present, else CPU; the default); "
    "opencv: OpenCV contrib TV-L1 on CPU (the reference); "
    "farneback, dis: OpenCV Farneback / DIS, fast but LOWER QUALITY than TV-L1"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="folder searched recursively for video files")
    parser.add_argument("out", help="output folder; the dataset's relative layout is kept")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=BACKEND_NAMES,
        help=BACKEND_HELP,
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        default="jpeg",
        choices=("jpeg", "compact", "zstd"),
        help="jpeg: TSN flow_x_00001.jpg / flow_y_ folders (+-20 px); "
        "compact: one memory-mappable .flow file per video (uncompressed); "
        "zstd: one .zflow file per video, lossless (needs zstandard)",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize keeping the aspect ratio to this short side (default: 340x256 as TSN)",
    )
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="worker processes (videos in parallel); on a host with several "
                        "GPUs, worker i uses cuda:(i %% device count)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch CPU threads per worker")
    parser.add_argument("--shard", default="0/1", help="i/n: process only every n-th video from i")
    parser.add_argument(
        "--device", default=None, help="torch backend device (default: cuda if any)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="frame pairs per torch batch (default: 1 on a CPU, the fastest "
                        "there; 64 on CUDA)")
    parser.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="overlap decoding, flow and writing in threads (default: when the flow runs on a "
        "GPU; on a CPU the threads take cores from TV-L1)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch backend: fuse TV-L1 with torch.compile (default: on CUDA only)",
    )


def run(args: argparse.Namespace) -> int:
    from datp.errors import DataError
    from datp.flow.extract import ExtractOptions, extract_dataset, find_videos, parse_shard, shard
    from datp.progress import Progress

    index, count = parse_shard(args.shard)
    options = ExtractOptions(
        backend=args.backend,
        fmt=args.fmt,
        short_side=args.short_side,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        compiled=args.compile,
        pipelined=args.pipeline,
    )
    videos = shard(find_videos(args.dataset), index, count)
    if not videos:
        raise DataError(f"{args.dataset}: no videos in shard {args.shard}")
    counts = {"done": 0, "skipped": 0, "failed": 0, "claimed": 0}
    failures, warnings, claimed = [], [], []
    pairs = 0
    if args.jobs <= 1:
        import torch

        torch.set_num_threads(args.threads)
    # Settings that clash with the folder's record are refused here, before any worker starts.
    results = extract_dataset(args.dataset, args.out, videos, options, jobs=args.jobs)
    started = time.monotonic()
    with Progress(len(videos), desc=f"flow {args.backend}", unit="video") as bar:
        for result in results:
            counts[result.status] += 1
            pairs += result.pairs
            if result.status == "failed":
                failures.append(result)
                bar.write(f"FAILED {result.video}: {result.error}")
            if result.status == "claimed":
                claimed.append(result)
            if result.warning:
                warnings.append(result)
            # Pairs/s, not videos/s: one video takes minutes on a CPU, so videos/s reads 0.0.
            rate = pairs / max(time.monotonic() - started, 1e-9)
            bar.update(1, extracted=counts["done"], skipped=counts["skipped"],
                       failed=counts["failed"], **{"pairs/s": f"{rate:.1f}"})
    seconds = max(time.monotonic() - started, 1e-9)
    others = ""
    if claimed:
        holders = ", ".join(sorted({c.holder for c in claimed}))
        others = f", {counts['claimed']} left to other processes extracting them now ({holders})"
    print(
        f"{len(videos)} videos: {counts['done']} extracted ({pairs} frame pairs, "
        f"{pairs / seconds:.1f} pairs/s), {counts['skipped']} already finished{others}, "
        f"{counts['failed']} failed"
    )
    for warning in warnings:
        print(f"WARNING {warning.video}: {warning.warning}")
    for failure in failures:
        print(f"FAILED {failure.video}: {failure.error}")
    return 1 if failures else 0
