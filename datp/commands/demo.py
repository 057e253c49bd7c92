"""``datp demo``: the main job on the embedded default, the synthetic benchmark."""

from __future__ import annotations

import argparse

from datp.commands.options import fraction, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run folder (resumes if it exists)")
    parser.add_argument("--epochs", type=positive_int, help="training epochs per model")
    parser.add_argument("--key-fraction", type=fraction,
                        help="share of each video with the action, in (0, 1]")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flow",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also extract TV-L1 flow, train the flow stream and fuse the two (a few minutes more)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override the training config",
    )
    parser.add_argument(
        "--sequences",
        action="store_true",
        help="instead: DATP on generated feature sequences (no video, seconds)",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    if args.sequences:
        return _sequences(args)
    from datp.demo import TINY, DemoSize, format_comparison, run_demo

    size = TINY if args.tiny else DemoSize()
    if args.epochs is not None:
        size = dataclasses.replace(size, epochs=args.epochs)
    if args.key_fraction is not None:
        size = dataclasses.replace(size, key_fraction=args.key_fraction)
    started = time.perf_counter()
    print(f"demo: {size}\nrun folder: {args.out}")
    streams = ("rgb", "flow") if args.flow else ("rgb",)
    results = run_demo(
        Path(args.out), size=size, overrides=args.overrides, seed=args.seed, streams=streams
    )
    print(format_comparison(results))
    print(f"figures: {Path(args.out) / 'figures'}  ({time.perf_counter() - started:.0f} s)")
    return 0


def _sequences(args: argparse.Namespace) -> int:
    import json
    import statistics
    from pathlib import Path

    from datp.toy import ToyTask, train_and_evaluate

    task = ToyTask(key_fraction=0.2 if args.key_fraction is None else args.key_fraction)
    print(f"sequence task: {task}")
    variants = {
        "average": dict(pooling="average", pool="logits"),
        "datp (MoG K=1)": dict(pooling="datp", generator="mog", num_gaussians=1),
        "datp (MoG K=2)": dict(pooling="datp", generator="mog", num_gaussians=2),
    }
    results = {}
    for name, settings in variants.items():
        runs = [train_and_evaluate(task, seed=s, **settings) for s in range(2)]
        results[name] = runs
        accuracy = [r["accuracy"] for r in runs]
        share = [r["weight_in_window"] for r in runs]
        print(
            f"{name:16s} accuracy {100 * statistics.mean(accuracy):5.1f} "
            f"+- {100 * statistics.stdev(accuracy):4.1f} %   weight inside the key window "
            f"{100 * statistics.mean(share):5.1f} % (window: {100 * runs[0]['window_share']:.0f} %)"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequence_demo.json").write_text(json.dumps(results, indent=2))
    return 0
