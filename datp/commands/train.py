"""``datp train CONFIG [--set section.key=value ...]``: train one stream."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="TOML config file (default: built-in defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from datp.build import build_data_bundle, build_model
    from datp.config import load_config
    from datp.train import NonFiniteLossError, train

    config = load_config(args.config, args.overrides)
    data = build_data_bundle(config)
    model = build_model(config, num_classes=len(data.classes))
    bar = None
    on_step = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        def on_step(info):
            nonlocal bar
            if bar is None or info.step == 1 or bar.total != info.steps_in_epoch:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=info.steps_in_epoch, desc=f"epoch {info.epoch}", leave=False)
                bar.n = info.step - 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{info.loss:.3f}",
                acc=f"{100 * info.accuracy:.1f}",
                videos_s=f"{info.videos_per_second:.1f}",
                lr=f"{info.lr:.2g}",
            )

    try:
        metrics = train(
            config,
            run_dir=Path(args.out),
            data=data,
            model=model,
            resume=args.resume,
            on_step=on_step,
        )
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if metrics:
        print(" ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)))
    print(f"run folder: {args.out}")
    return 0
