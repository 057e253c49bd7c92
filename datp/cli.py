"""The ``datp`` command line: the table of subcommands, and the one place where user errors become
one line.

Any :class:`datp.errors.UserError` (a bad file, flag, config value or missing package) and any
``OSError`` (a full disk, a missing folder, an unreadable file) that reaches :func:`main` is
printed as ``error: <message>`` with exit status 2; ``datp -v`` adds the traceback. Every other
exception is a bug and keeps its traceback. Commands do not catch these errors themselves.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import NoReturn

from datp.errors import UserError, message_from_worker

DESCRIPTION = """\
datp trains and evaluates video action recognition models with Deep Adaptive Temporal Pooling
(DATP): two-stream TSN networks (RGB and TV-L1 optical flow) on UCF101, HMDB51, Kinetics or your
own videos, with the paper's test schemes, prediction on video files and export.
"""

EPILOG = """\
a whole pipeline:
  datp check data/UCF101 --format ucf101        every problem of a dataset, listed
  datp flow data/UCF101/UCF-101 data/UCF101/flow
  datp train configs/ucf101_rgb.toml --out runs/rgb   (model.pretrained = "imagenet")
  datp evaluate runs/rgb/checkpoints/best.pt --scheme datp
  datp fuse runs/rgb/eval_datp/scores.pt runs/flow/eval_datp/scores.pt
  datp predict clip.mp4 --checkpoint runs/rgb/checkpoints/best.pt

A mistake in a file, flag or setting ends with one line, "error: <what>: <problem>", and exit
status 2; -v shows where it was raised as well. `datp demo` runs the whole method on generated
data in a few CPU minutes.
"""

# name -> (module under datp.commands, one-line help). Command modules import only argparse at the
# top and the heavy libraries inside run(), so `datp --help` stays fast and a missing optional
# dependency breaks only the command that needs it.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train average pooling and DATP on generated data and compare them"),
    "flow": ("flow", "extract TV-L1 optical flow for every video of a dataset (resumable)"),
    "features": ("features", "extract per-video feature sequences with a frozen backbone "
                 "(resumable)"),
    "synth": ("synth", "write the synthetic benchmark (UCF101 layout) to a folder"),
    "check": ("check", "report every problem of a dataset (bad videos, missing files, classes)"),
    "train": ("train", "train one stream (RGB or flow) from a TOML config"),
    "evaluate": ("evaluate", "evaluate a checkpoint under one of the paper's test schemes"),
    "fuse": ("fuse", "late fusion of evaluated streams (RGB 1 : flow 1.5 by default)"),
    "predict": ("predict", "classify video files and show where the temporal weights peak"),
    "export": ("export", "export a checkpoint's network to ONNX or TorchScript, checked"),
}

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad command line shown as every other mistake is: one line, exit 2
    (argparse prints the whole usage first; ``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR_STATUS, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="datp", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"datp.commands.{module_name}")
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except (UserError, OSError) as error:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {error_line(error)}", file=sys.stderr)
        return USER_ERROR_STATUS


def error_line(error: BaseException) -> str:
    """The one line a user error is shown as."""
    problems = getattr(error, "problems", None)
    if problems:  # a DataError that lists several problems: the first, and how many more
        more = len(problems) - 1
        return problems[0] + (f" (and {more} more; `datp check` lists them all)" if more else "")
    if (isinstance(error, OSError) and not isinstance(error, UserError) and error.strerror
            and error.filename is not None):
        where = error.filename if error.filename is not None else ""
        return f"{where}: {error.strerror}" if where else error.strerror
    text = message_from_worker(str(error)).strip() or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
