"""``datp evaluate CHECKPOINT``: metrics, per-class accuracy, confusion matrix and per-video scores
under one of the paper's test schemes; with ``--localization ANNOTATIONS`` also the temporal
weights scored as weak localization (``detections.json``, metrics.json's ``localization``)."""

from __future__ import annotations

import argparse
import os

from datp.choices import LocalizationWeights, TestCrops, TestScheme, names
from datp.commands.options import add_overrides, segment_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by datp train")
    parser.add_argument(
        "--scheme",
        default="datp",
        choices=names(TestScheme),
        help="datp (as trained) | p1 (random Gaussians) | p2 (DATP-trained, average of 25) | "
        "p3 (average-trained, average of 25) | tsn (25 segments x 10 crops)",
    )
    parser.add_argument("--segments", type=segment_count,
                        help="N at test time (overrides the scheme)")
    parser.add_argument("--crops", type=int, choices=names(TestCrops), help="crops per video")
    add_overrides(parser, "the checkpoint's config, e.g. data.root=/elsewhere")
    parser.add_argument("--out", help="report folder (default: <run>/eval_<scheme>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the p1 random Gaussians")
    parser.add_argument("--no-figures", action="store_true", help="no confusion.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    parser.add_argument(
        "--localization", metavar="ANNOTATIONS",
        help="temporal annotations (ActivityNet-style JSON, or a folder of THUMOS14's lists): "
        "localize the evaluated videos from their per-step scores and temporal weights, write "
        "detections.json and add their mAP to metrics.json",
    )
    parser.add_argument(
        "--localization-weights", default="pooling", choices=names(LocalizationWeights),
        help="pooling: the per-step probabilities weighted with the pooling's weights (a "
        "mixture's Gaussians on a dense grid); components: a mixture's Gaussians at equal "
        "height (rho ignored); none: the per-step scores alone (default pooling)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datp.engine.build import evaluation_run
    from datp.engine.evaluate import evaluate
    from datp.engine.localize import claim_localization
    from datp.progress import Progress

    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.parent.parent / f"eval_{args.scheme}"
    run = evaluation_run(checkpoint, scheme=args.scheme, segments=args.segments,
                         crops=args.crops, overrides=args.overrides, seed=args.seed)
    annotations = _annotations(args, run)  # read and checked before the evaluation
    claim_localization(out, annotations, weights=args.localization_weights)
    with Progress(None, desc="evaluate", unit="video", enabled=not args.no_progress) as bar:
        metrics = evaluate(run, out_dir=out, progress=bar.callback,
                           confusion_figure=not args.no_figures).metrics
    print(
        f"scheme {args.scheme}: N={metrics['segments']} crops={metrics['crops']} "
        f"videos={metrics['videos']}"
    )
    print(" ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if isinstance(v, float)))
    if metrics["skipped_videos"]:
        print(f"warning: {metrics['skipped_videos']} unreadable videos are not in these metrics; "
              f"listed in {out / 'skipped.txt'}")
    if annotations is not None and _first_process():
        _localize(args, run, out, annotations)
    print(f"report: {out}")
    return 0


def _first_process() -> bool:
    return os.environ.get("RANK", "0") == "0"  # torchrun: the first process


def _annotations(args: argparse.Namespace, run):
    """The --localization annotations checked against the model's classes and the test split's
    videos (every process refuses a bad file; the first prints the warnings), or None."""
    if not args.localization:
        return None
    from datp.engine.localize import check_annotations

    checked = check_annotations(args.localization, classes=run.classes,
                                videos=[item.path for item in run.dataset.items])
    if _first_process():
        for warning in checked.warnings:
            print(f"warning: {warning}")
    return checked


def _localize(args: argparse.Namespace, run, out, annotations) -> None:
    from datp.engine.localize import (
        dataset_durations,
        localize_evaluation,
        summary,
        write_localization,
    )
    from datp.score_file import SCORES, ScoreFile

    localization = localize_evaluation(
        [ScoreFile.load(out / SCORES)], annotations, weights=args.localization_weights,
        durations_of=lambda videos: dataset_durations(run.dataset, videos),
        score_paths=[out / SCORES],
    )
    path = write_localization(out, localization)
    protocol = localization.entry["protocol"]
    print(summary(localization.entry))
    for count, what in ((protocol["videos_evaluated_not_annotated"], "evaluated video(s) the "
                         "annotations do not name: not localized"),
                        (protocol["videos_annotated_not_evaluated"], "annotated video(s) not "
                         "evaluated (not in the test split)")):
        if count:
            print(f"note: {count} {what}")
    print(f"detections: {path}")
