"""``datp check DATASET``: list every problem of a dataset at once; exit code 1 if any."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset root (e.g. the folder `datp synth` wrote)")
    parser.add_argument("--format", default="ucf101",
                        choices=["ucf101", "hmdb51", "kinetics", "list", "folders"])
    parser.add_argument("--splits", default="1,2,3",
                        help="UCF101 / HMDB51 split numbers to check, comma separated")
    parser.add_argument("--annotations", default="",
                        help="annotation folder relative to the root (default: the format's)")
    parser.add_argument("--train-list", default="", help="for --format list")
    parser.add_argument("--test-list", default="", help="for --format list")
    parser.add_argument("--source", default="video", choices=["video", "frames"])
    parser.add_argument("--flow-root", default="",
                        help="also check flow folders here (relative to the root)")
    parser.add_argument("--full", action="store_true",
                        help="decode every frame (default: the first and the last)")


def run(args: argparse.Namespace) -> int:
    import sys

    from datp.data.check import check_dataset

    splits = [int(s) for s in args.splits.split(",") if s.strip()]

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done % 50 == 0 or done == total):
            print(f"\rchecked {done}/{total}", end="\n" if done == total else "",
                  file=sys.stderr)

    problems, checked = check_dataset(
        root=args.dataset, format=args.format, splits=splits, annotations=args.annotations,
        train_list=args.train_list, test_list=args.test_list, source=args.source,
        flow_root=args.flow_root, full=args.full, progress=progress,
    )
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s); {checked} video(s) checked in {args.dataset}")
    return 1 if problems else 0
