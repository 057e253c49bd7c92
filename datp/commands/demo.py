"""``datp demo``: the main job on the embedded default, the synthetic benchmark."""

from __future__ import annotations

import argparse
from typing import Any

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
    from datp.engine.demo import FULL, TINY, run_demo

    size = TINY if args.tiny else FULL
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
    print(_comparison(results))
    print(f"figures: {Path(args.out) / 'figures'}  ({time.perf_counter() - started:.0f} s)")
    return 0


def _comparison(results: dict[str, Any]) -> str:
    from datp.engine.demo import VARIANTS, run_name

    lines = [
        f"{'stream':7s} {'pooling':10s} {'top1':>6s} {'mean class':>11s} "
        f"{'weight in key window':>21s}"
    ]
    for stream in results.get("streams", ["rgb"]):
        for variant in VARIANTS:
            r = results[run_name(stream, variant)]
            lines.append(
                f"{stream:7s} {variant:10s} {100 * r['top1']:6.1f} "
                f"{100 * r['mean_class_accuracy']:11.1f} {100 * r['weight_in_key_window']:20.1f}%"
            )
    for variant in VARIANTS:
        if f"fused_{variant}" in results:
            r = results[f"fused_{variant}"]
            lines.append(
                f"{'fused':7s} {variant:10s} {100 * r['top1']:6.1f} "
                f"{100 * r['mean_class_accuracy']:11.1f}   (RGB 1 : flow 1.5)"
            )
    lines.append(
        f"(the key window covers {100 * results['key_window_share']:.0f} % of each video;"
        " uniform weights put that share inside it)"
    )
    return "\n".join(lines)


def _sequences(args: argparse.Namespace) -> int:
    import statistics
    from pathlib import Path

    from datp.engine.toy import ToyTask, run_sequence_demo

    task = ToyTask(key_fraction=0.2 if args.key_fraction is None else args.key_fraction)
    print(f"sequence task: {task}")

    def report(name: str, runs: list[dict[str, float]]) -> None:
        accuracy = [r["accuracy"] for r in runs]
        share = [r["weight_in_window"] for r in runs]
        print(
            f"{name:16s} accuracy {100 * statistics.mean(accuracy):5.1f} "
            f"+- {100 * statistics.stdev(accuracy):4.1f} %   weight inside the key window "
            f"{100 * statistics.mean(share):5.1f} % (window: {100 * runs[0]['window_share']:.0f} %)"
        )

    run_sequence_demo(task, Path(args.out), report=report)
    return 0
