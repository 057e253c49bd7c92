"""``datp features SRC OUT``: per-video feature sequences from a frozen backbone."""

from __future__ import annotations

import argparse
import os
import time

from datp.commands.options import positive_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a folder searched recursively for video files (or frame "
                        "folders, or for --checkpoint of a flow stream stored flow), or a list "
                        "file naming them relative to its folder")
    parser.add_argument("out", help="output folder: <video>.npy [T, D] and <video>.json beside "
                        "it, mirroring the relative paths")
    parser.add_argument("--backbone", help="a torchvision image or video classification model "
                        "(resnet18, vit_b_16, r2plus1d_18, s3d, mvit_v2_s, swin3d_t, ...)")
    parser.add_argument("--weights", help="for --backbone: a torchvision weights name (e.g. "
                        "ViT_B_16_Weights.IMAGENET1K_V1, read from torch hub's cache, its hash "
                        "checked), 'imagenet' (the default weights), or a local file of the "
                        "model's parameters; without it: random parameters (speed tests only)")
    parser.add_argument("--checkpoint", help="instead of --backbone: a datp checkpoint (RGB or "
                        "flow stream), whose backbone and test transform are used")
    parser.add_argument("--fps", type=positive_float, default=None,
                        help="one frame per 1/FPS seconds, chosen by presentation time "
                        "(default: every frame)")
    parser.add_argument("--window", type=positive_int, default=None,
                        help="frames per step: a video model's clip (default: its clip length), "
                        "an image model's frames averaged (default 1)")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="frames from one step to the next (default: 1; a video model's "
                        "window / 4)")
    parser.add_argument("--frame-rate", type=positive_float, default=None,
                        help="the frame rate of frame folders or stored flow, which do not say")
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                        help="storage (default float16: half the bytes, rounding below bf16's)")
    parser.add_argument("--device", default=None, help="default: cuda if any, else cpu")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="auto: bf16 autocast on CUDA, float32 on a CPU")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="frames, clips or stacks per forward (default: 256 on CUDA, 16 on "
                        "a CPU)")
    parser.add_argument("--decode-threads", type=positive_int, default=None,
                        help="videos decoded at once (default: 4 on CUDA, 1 on a CPU)")
    parser.add_argument("--decoder", default="pyav", choices=("pyav", "torchcodec"))
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--shard", default="0/1",
                        help="i/n: process only every n-th video from i")


def _backbone(args: argparse.Namespace):
    """The frozen backbone the options name: a torchvision model, or a datp checkpoint's."""
    from datp.errors import InputError

    if (args.backbone is None) == (args.checkpoint is None):
        raise InputError("give --backbone NAME (a torchvision model) or --checkpoint FILE (a "
                         "datp checkpoint), one of the two")
    if args.checkpoint is not None and args.weights is not None:
        raise InputError("--weights goes with --backbone; a checkpoint carries its parameters")
    if args.checkpoint is not None:
        from datp.engine.features import checkpoint_backbone

        return checkpoint_backbone(args.checkpoint)
    from datp.features.backbones import torchvision_backbone

    return torchvision_backbone(args.backbone, weights=args.weights)


def run(args: argparse.Namespace) -> int:
    import torch

    from datp.errors import DataError
    from datp.features.extract import FeatureOptions, extract_features, resolve_grid
    from datp.features.sources import list_sources
    from datp.flow.extract import parse_shard, shard
    from datp.progress import Progress

    index, count = parse_shard(args.shard)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    backbone = _backbone(args)
    options = FeatureOptions(
        grid=resolve_grid(backbone, fps=args.fps, window=args.window, stride=args.stride),
        dtype=args.dtype, device=args.device, precision=args.precision,
        batch_size=args.batch_size or (256 if cuda else 16),
        decode_threads=args.decode_threads or (min(4, os.cpu_count() or 1) if cuda else 1),
        decoder=args.decoder, frame_rate=args.frame_rate,
    )
    base, videos = list_sources(args.src, flow=backbone.kind == "flow")
    videos = shard(videos, index, count)
    if not videos:
        raise DataError(f"{args.src}: no videos in shard {args.shard}")
    # Settings that clash with the folder's record are refused here, before anything is read.
    results = extract_features(base, args.out, videos, backbone, options)
    counts = {"done": 0, "skipped": 0, "failed": 0, "claimed": 0}
    failures, holders, units = [], set(), 0
    started = time.monotonic()
    name = backbone.settings["backbone"]["name"]
    with Progress(len(videos), desc=f"features {name}", unit="video") as bar:
        for result in results:
            counts[result.status] += 1
            units += result.units
            if result.status == "failed":
                failures.append(result)
                bar.write(f"FAILED {result.video}: {result.error}")
            if result.status == "claimed":
                holders.add(result.holder)
            rate = units / max(time.monotonic() - started, 1e-9)
            bar.update(1, extracted=counts["done"], skipped=counts["skipped"],
                       failed=counts["failed"], **{"frames/s": f"{rate:.1f}"})
    seconds = max(time.monotonic() - started, 1e-9)
    others = (f", {counts['claimed']} left to other processes extracting them now "
              f"({', '.join(sorted(holders))})" if holders else "")
    print(f"{len(videos)} videos: {counts['done']} extracted ({units} frames, "
          f"{units / seconds:.1f} frames/s), {counts['skipped']} already finished{others}, "
          f"{counts['failed']} failed")
    for failure in failures:
        print(f"FAILED {failure.video}: {failure.error}")
    return 1 if failures else 0
