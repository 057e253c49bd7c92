"""``datp check DATASET``: report every problem of a dataset as it is found, then a summary."""

from __future__ import annotations

import argparse

from datp.choices import FeatureLayout, Source, names
from datp.commands.options import positive_float, positive_int
from datp.errors import InputError

EPILOG = """Each problem is printed as it is found, as "where: error: what" or "where: warning:
what", then one summary line. Errors are data that is wrong (missing, unreadable or truncated
files, malformed or non-UTF-8 annotation lines, a video in both the train and the test list);
warnings are data that trains, but probably not as meant (duplicate lines, videos no list names,
videos with fewer frames than --segments). Temporal annotations (ActivityNet-style JSON or
THUMOS14's lists) are checked too: instances outside their video, unknown labels, a file that
annotates none of the test list's videos (errors); videos without instances, annotated videos no
list names, classes without an instance in the test list's annotated videos (warnings). Exit
status: 0 with no error (warnings alone pass),
1 with at least one error, 2 for a bad option."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("dataset", help="dataset root (e.g. the folder `datp synth` wrote)")
    parser.add_argument("--format", default="ucf101",
                        help="ucf101 | hmdb51 | kinetics | list | folders (default ucf101)")
    parser.add_argument("--splits", default=None,
                        help="UCF101 / HMDB51 split numbers to check, comma separated; their "
                        "lists must be there (default: the splits whose lists are there)")
    parser.add_argument("--annotations", default="",
                        help="annotation folder relative to the root (default: the format's)")
    parser.add_argument("--train-list", default="", help="for --format list")
    parser.add_argument("--test-list", default="", help="for --format list")
    parser.add_argument("--source", default="video", choices=names(Source))
    parser.add_argument("--flow-root", default="",
                        help="also check flow folders here (relative to the root)")
    features = parser.add_argument_group(
        "--source features", "the feature files of each video, read as data.features_* say")
    features.add_argument("--features-root", default="",
                          help="the features folder (relative to the root; default features)")
    features.add_argument("--features-layout", default="auto", choices=names(FeatureLayout))
    for name, what in (("stride", "frames between steps"), ("window", "frames per step"),
                       ("fps", "the videos' frame rate")):
        features.add_argument(f"--features-{name}", type=positive_float, default=None,
                              help=f"windows layout: {what}")
    features.add_argument("--features-info", default=None,
                          help="windows layout: an ActivityNet-style JSON of fps and durations "
                          "(relative to the root)")
    features.add_argument("--features-key", default=None,
                          help="video_features layout: the feature kind to read")
    parser.add_argument("--full", action="store_true",
                        help="decode every frame (default: the first and the last)")
    parser.add_argument("--segments", type=positive_int,
                        help="N, the segments training samples from each video: a video with "
                        "fewer frames is a warning (default: data.num_segments's default)")
    parser.add_argument(
        "--temporal-annotations", metavar="FILE",
        help="temporal annotations to check (an ActivityNet-style JSON file or a folder of "
        "THUMOS14's lists; default: annotations/instances.json under the root if it exists)")
    parser.add_argument("--flow-length", type=positive_int,
                        help="L, flow fields per segment, for the same warning about flow with "
                        "--flow-root (default: data.flow_length's default)")


def _splits(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise InputError(f"--splits {text}: must be split numbers separated by commas, "
                         "e.g. 1 or 1,2,3")
    return [int(part) for part in parts]


def _check_options(args: argparse.Namespace) -> list[int] | None:
    """The split numbers (None: those present); refuses every bad option first, naming it."""
    from pathlib import Path

    from datp.choices import Format
    from datp.config import OneOf

    if not Path(args.dataset).is_dir():
        raise InputError(f"{args.dataset}: no such folder (DATASET is the dataset's root)")
    problem = OneOf(names(Format)).problem(args.format)
    if problem is not None:
        raise InputError(f"--format {args.format}: {problem}")
    if args.format == "list" and not (args.train_list and args.test_list):
        raise InputError("--format list needs --train-list and --test-list (list files relative "
                         "to the root)")
    return _splits(args.splits)


def _temporal_annotations(args: argparse.Namespace):
    """The temporal annotations to check: the file given (it must exist), else the default one
    under the root when it is there, else None."""
    from pathlib import Path

    from datp.data.temporal_annotations import DEFAULT_PATH

    if args.temporal_annotations is None:
        default = Path(args.dataset) / DEFAULT_PATH
        return default if default.is_file() else None
    given = Path(args.temporal_annotations)
    if not given.exists():
        raise InputError(f"--temporal-annotations {given}: no such file or folder")
    return given


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from datp.data.build import DEFAULTS
    from datp.data.check import Problem, check_dataset
    from datp.data.features import FeatureReading
    from datp.progress import Progress

    splits = _check_options(args)
    temporal = _temporal_annotations(args)
    counts = {"error": 0, "warning": 0}
    with Progress(None, desc="check", unit="video") as bar:

        def report(problem: Problem) -> None:
            counts[problem.severity] += 1
            bar.write(str(problem), file=sys.stdout)

        checked = check_dataset(
            root=args.dataset, format=args.format, splits=splits, annotations=args.annotations,
            train_list=args.train_list, test_list=args.test_list, source=args.source,
            flow_root=args.flow_root, full=args.full, features_root=args.features_root,
            features=FeatureReading(
                layout=args.features_layout, stride=args.features_stride,
                window=args.features_window, fps=args.features_fps,
                info=Path(args.dataset) / args.features_info if args.features_info else None,
                key=args.features_key),
            segments=args.segments or DEFAULTS.num_segments,
            flow_length=args.flow_length or DEFAULTS.flow_length, report=report,
            progress=bar.callback, temporal_annotations=temporal,
        )
    print(f"{counts['error']} error(s), {counts['warning']} warning(s); {checked} video(s) "
          f"checked in {args.dataset}" + (f", and the temporal annotations {temporal}"
                                           if temporal is not None else ""))
    return 1 if counts["error"] else 0
