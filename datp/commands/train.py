"""``datp train CONFIG [--set section.key=value ...]``: train one stream.

Exit status: 0 when the run is done, 2 for a user error, 130 on Ctrl-C, and
:data:`STOPPED_STATUS` (75) when a stop signal (``--stop-signals``, SIGTERM and SIGUSR1 by
default) ended it after saving ``last.pt``: ``--resume`` (or ``--resume auto``) continues it.
"""

from __future__ import annotations

import argparse

from datp.commands.options import add_overrides

STOPPED_STATUS = 75
"""EX_TEMPFAIL of sysexits.h: stopped by a signal, checkpoint saved, try again later."""


def _resume(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(
            f"expected nothing or 'auto', got {text!r} (give the config before --resume)")
    return text


def _stop_signals(text: str) -> tuple:
    from datp.engine.stop_signals import stop_signals
    from datp.errors import InputError

    try:
        return stop_signals(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="TOML config file (default: built-in defaults)")
    add_overrides(parser, "one config value")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--resume", nargs="?", const=True, default=False, type=_resume, metavar="auto",
        help="continue the run in --out from its last checkpoint; refuses settings that would "
        "change what is learned (data, classes, model, pooling, optimizer, schedule). "
        "--resume auto: continue it if --out holds a checkpoint, else start it (for a cluster "
        "job that may be requeued)",
    )
    parser.add_argument(
        "--stop-signals", type=_stop_signals, default="TERM,USR1", metavar="SIG,...",
        help="signals that stop the run like Ctrl-C: the step finishes, last.pt is saved, exit "
        f"status {STOPPED_STATUS} (default: TERM,USR1; 'none': the signals act as usual)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from datp.config import load_config
    from datp.engine.build import training_run
    from datp.engine.stop_signals import TrainingStopped
    from datp.engine.train import train
    from datp.progress import Progress

    run = training_run(load_config(args.config, args.overrides), Path(args.out),
                       resume=args.resume)
    enabled = not args.no_progress
    bars: dict[str, Progress] = {}

    def on_step(info) -> None:
        bar = bars.get("train")
        if bar is None or bar.desc != f"epoch {info.epoch}":
            if bar is not None:
                bar.close()
            bar = bars["train"] = Progress(info.steps_in_epoch, desc=f"epoch {info.epoch}",
                                           unit="step", enabled=enabled, leave=False)
        bar.set(info.step, loss=round(info.loss, 4), acc=f"{100 * info.accuracy:.1f}",
                videos_s=f"{info.videos_per_second:.1f}", lr=f"{info.lr:.2g}")

    def on_evaluate(done: int, total: int) -> None:
        if "train" in bars:
            bars.pop("train").close()
        bar = bars.get("eval")
        if bar is None or done < bar.done:
            bar = bars["eval"] = Progress(total, desc="evaluate", unit="video", enabled=enabled,
                                          leave=False)
        bar.callback(done, total)
        if done >= total:
            bars.pop("eval").close()

    try:
        metrics = train(run, on_step=on_step, on_evaluate=on_evaluate,
                        stop_on=args.stop_signals)
    except TrainingStopped as stop:
        print(f"stopped by {stop.signal_name}; continue with --resume (or --resume auto)",
              file=sys.stderr)
        return STOPPED_STATUS
    finally:
        for bar in bars.values():
            bar.close()
    if metrics:
        print(" ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)))
    print(f"run folder: {args.out}")
    return 0
