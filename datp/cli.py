"""The ``datp`` command line: a literal table of subcommands, each imported only when used."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module under datp.commands, one-line help). Command modules import only argparse at the
# top and the heavy libraries inside run(), so `datp --help` stays fast and a missing optional
# dependency breaks only the command that needs it.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train average pooling and DATP on generated data and compare them"),
    "flow": ("flow", "extract TV-L1 optical flow for every video of a dataset (resumable)"),
    "synth": ("synth", "write the synthetic benchmark (UCF101 layout) to a folder"),
    "check": ("check", "report every problem of a dataset (bad videos, missing files, classes)"),
    "train": ("train", "train one stream (RGB or flow) from a TOML config"),
    "evaluate": ("evaluate", "evaluate a checkpoint under one of the paper's test schemes"),
    "fuse": ("fuse", "late fusion of evaluated streams (RGB 1 : flow 1.5 by default)"),
    "predict": ("predict", "classify video files and show where the temporal weights peak"),
    "export": ("export", "export a checkpoint's network to ONNX or TorchScript, checked"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
        return 130
