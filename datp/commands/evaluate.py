"""``datp evaluate CHECKPOINT``: metrics, per-class accuracy, confusion matrix and per-video scores
under one of the paper's test schemes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by datp train")
    parser.add_argument(
        "--scheme",
        default="datp",
        help="datp (as trained) | p1 (random Gaussians) | p2 (DATP-trained, average of 25) | "
        "p3 (average-trained, average of 25) | tsn (25 segments x 10 crops)",
    )
    parser.add_argument("--segments", type=int, help="N at test time (overrides the scheme)")
    parser.add_argument("--crops", type=int, choices=[1, 3, 10], help="crops per video")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override the checkpoint's config, e.g. data.root=/elsewhere",
    )
    parser.add_argument("--out", help="report folder (default: <run>/eval_<scheme>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the p1 random Gaussians")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datp.evaluate import evaluate_checkpoint

    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.parent.parent / f"eval_{args.scheme}"
    metrics, _ = evaluate_checkpoint(
        checkpoint,
        scheme=args.scheme,
        segments=args.segments,
        crops=args.crops,
        overrides=args.overrides,
        out_dir=out,
        seed=args.seed,
    )
    print(
        f"scheme {args.scheme}: N={metrics['segments']} crops={metrics['crops']} "
        f"videos={metrics['videos']}"
    )
    print(" ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)))
    print(f"report: {out}")
    return 0
