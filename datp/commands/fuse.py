"""``datp fuse SCORES SCORES ... [--weights 1 1.5]``: late fusion of evaluated streams; with
``--localization ANNOTATIONS --out DIR`` also weak localization from the streams' temporal class
activations, fused before localizing."""

from __future__ import annotations

import argparse

from datp.choices import LocalizationWeights, names
from datp.commands.options import non_negative_float
from datp.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", nargs="+", help="scores.pt files written by datp evaluate "
                        "(two or more, each a different stream)")
    parser.add_argument(
        "--weights",
        type=non_negative_float,
        nargs="+",
        default=None,
        help="one weight per stream (default: 1 for the first, 1.5 for the rest, "
        "the paper's RGB : flow)",
    )
    parser.add_argument(
        "--softmax", action="store_true", help="fuse probabilities instead of raw pooled scores"
    )
    parser.add_argument("--out", help="folder for the fused report")
    parser.add_argument(
        "--localization", metavar="ANNOTATIONS",
        help="temporal annotations: fuse the streams' temporal class activations (with --weights)"
        " and localize, writing detections.json and the mAP into --out's metrics.json",
    )
    parser.add_argument("--localization-weights", default="pooling",
                        choices=names(LocalizationWeights),
                        help="as datp evaluate's (default pooling)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datp.engine.fusion import fuse_streams, write_fused_report
    from datp.scoring import FUSION_WEIGHTS, summarize, validate_fusion_weights

    rgb, flow = FUSION_WEIGHTS["rgb"], FUSION_WEIGHTS["flow"]
    weights = args.weights or [rgb] + [flow] * (len(args.scores) - 1)
    validate_fusion_weights(weights, option="--weights", num_streams=len(args.scores))
    if args.localization and not args.out:
        raise InputError("--localization writes detections.json into the fused report: give --out")
    checked = _check_localization(args)  # before fusing: a bad file costs nothing
    if args.out:
        from datp.engine.localize import claim_localization

        claim_localization(Path(args.out), None if checked is None else checked[1],
                           weights=args.localization_weights)
    fused = fuse_streams([Path(p) for p in args.scores], weights, softmax=args.softmax)
    metrics = summarize(fused.scores, fused.labels)
    print(" ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items()))
    for index in fused.unknown:
        print(f"warning: {args.scores[index]} records no protocol (written before datp "
              "recorded one): how its scores were made is unknown")
    for difference in fused.differences:
        print(f"note: {difference}")
    if args.out:
        write_fused_report(Path(args.out), fused, score_files=args.scores, weights=weights,
                           softmax=args.softmax, metrics=metrics)
    if checked is not None:
        from datp.engine.localize import (
            fusion_note,
            localize_fusion,
            summary,
            write_localization,
        )

        streams, annotations = checked
        for warning in annotations.warnings:
            print(f"warning: {warning}")
        localization = localize_fusion(args.scores, weights, annotations, streams=streams,
                                       weights=args.localization_weights)
        note = fusion_note(args.scores, localization.entry)
        if note is not None:
            print(f"note: {note}")
        print(summary(localization.entry))
        print(f"detections: {write_localization(Path(args.out), localization)}")
    return 0


def _check_localization(args: argparse.Namespace):
    """The score files and the --localization annotations, read and checked, or None without
    --localization."""
    if not args.localization:
        return None
    from datp.engine.localize import check_fusion

    return check_fusion(args.scores, args.localization)
