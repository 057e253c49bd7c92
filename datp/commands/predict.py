"""``datp predict VIDEO --checkpoint CKPT [--flow-checkpoint CKPT]``: classify a video file and
show where the temporal weights peak. VIDEO may also be a folder (every video under it) or a
list file (``.txt`` / ``.lst``, one path per line): then one CSV row per video."""

from __future__ import annotations

import argparse

from datp.choices import TestCrops, names
from datp.commands.options import (
    fraction,
    non_negative_float,
    positive_int,
    short_side,
)
from datp.flow import BACKEND_NAMES


def _segments(text: str) -> int | float:
    """``--segments``: a count (int) or seconds per segment (float), refused by argparse."""
    from datp.data.sampling import MAX_SEGMENTS, parse_segments
    from datp.errors import InputError

    try:
        value = parse_segments(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).partition(": ")[2]) from None
    if isinstance(value, int) and value > MAX_SEGMENTS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_SEGMENTS}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", help="a video file, a folder searched recursively, or a list file (.txt, .lst)"
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by datp train")
    parser.add_argument(
        "--flow-checkpoint", help="a flow-stream checkpoint to fuse with an RGB --checkpoint"
    )
    parser.add_argument(
        "--segments", type=_segments,
        help="N: a count, seconds per segment (2s) or auto (one per second, at least the "
        "checkpoint's test_segments; for long videos: they are read a chunk at a time) "
        "(default: the checkpoint's test_segments); a mixture of Gaussians runs at any N, the "
        "discrete generator only at its training N",
    )
    parser.add_argument("--crops", type=int, choices=names(TestCrops), help="crops per segment")
    parser.add_argument("--top-k", type=positive_int, default=5,
                        help="classes to report (default 5)")
    parser.add_argument(
        "--fusion-weights", type=non_negative_float, nargs=2, metavar=("RGB", "FLOW"), default=None,
        help="late-fusion weights (default 1 1.5, the paper's)",
    )
    parser.add_argument(
        "--peak-fraction", type=fraction, default=0.5,
        help="a segment is part of a peak when its weight is at least this share of the largest "
        "(default 0.5)",
    )
    parser.add_argument(
        "--flow-backend", default=None, choices=BACKEND_NAMES,
        help="how flow is computed for the flow stream (default: what its checkpoint recorded "
        "of the training flow's extraction, else torch, our TV-L1, slow on CPU)",
    )
    parser.add_argument(
        "--flow-short-side", type=short_side, default=None,
        help="resize before flow as datp flow --short-side did (default: what the checkpoint "
        "recorded, else 340x256, TSN's)",
    )
    parser.add_argument("--classes", help="class list to check the checkpoint against")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override the checkpoints' saved config",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--out", default="predictions",
        help="output folder: <video>.json, <video>.detections.json and <video>.png, or "
        "predictions.csv in batch mode",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datp.engine.build import load_stream
    from datp.engine.predict import flow_settings, predict_video
    from datp.engine.predict_files import is_batch, write_prediction
    from datp.engine.streams import check_streams, read_class_list
    from datp.localization import check_peak_fraction
    from datp.scoring import validate_fusion_weights

    target = Path(args.video)
    out = Path(args.out)
    streams = [
        load_stream(path, crops=args.crops, overrides=args.overrides, device=args.device)
        for path in [args.checkpoint, args.flow_checkpoint]
        if path
    ]
    check_streams(streams, read_class_list(args.classes) if args.classes else None)
    if args.fusion_weights:
        validate_fusion_weights(args.fusion_weights[: len(streams)],
                                option="--fusion-weights", num_streams=len(streams))
    check_peak_fraction(args.peak_fraction)
    backend = None
    flow_short_side = args.flow_short_side
    flow = flow_settings(streams, backend=args.flow_backend, short_side=args.flow_short_side)
    if flow is not None:
        flow_short_side = flow.short_side
        print(f"flow: {flow.backend}, " + (
            f"short side {flow_short_side}" if flow_short_side else "340x256"
        ) + (f" ({' and '.join(flow.from_record)} as recorded in the checkpoint)"
             if flow.from_record else ""))
        backend = flow.build_backend(args.device)

    options = dict(
        top_k=args.top_k,
        fusion_weights=args.fusion_weights[: len(streams)] if args.fusion_weights else None,
        fraction=args.peak_fraction,
        flow_backend=backend,
        flow_short_side=flow_short_side,
        progress=_FieldProgress(),
        segments=args.segments if isinstance(args.segments, int) else None,
        seconds_per_segment=args.segments if isinstance(args.segments, float) else None,
    )
    if is_batch(target):
        return _run_batch(target, out, streams, options)
    prediction = predict_video(target, streams, **options)
    json_path, png_path = write_prediction(prediction, out)
    _report(prediction, json_path, png_path)
    return 0


def _report(prediction, json_path, png_path) -> None:
    """What one video's prediction says, and where it was written."""
    from datp.engine.predict_files import detections_path
    from datp.localization import format_range

    print(f"{prediction.video}: {prediction.num_frames} frames", end="")
    print(f", {prediction.duration_s:.2f} s" if prediction.duration_s else "")
    for warning in prediction.warnings:
        print(f"warning: {warning}")
    for rank, score in enumerate(prediction.top, 1):
        print(f"{rank:>3}. {score.name:<30} {100 * score.probability:6.2f} %")
    for stream in prediction.streams:
        for i, peak in enumerate(stream.peaks[:3]):
            label = "key action" if i == 0 else "also"
            print(f"{label} ({stream.modality} weights): {format_range(peak)}")
        if len(stream.peaks) > 3:
            print(f"and {len(stream.peaks) - 3} more peaks in {json_path}")
    for detection in prediction.detections[:5]:
        print(f"detected {detection.label} {detection.start:.2f}-{detection.end:.2f} s "
              f"(score {detection.score:.3f})")
    print(f"wrote {json_path}, {png_path} and {detections_path(json_path.parent, json_path.stem)}")


class _FieldProgress:
    """A ``progress(done, total)`` callback: one bar per video's on-demand flow fields."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from datp.progress import Progress

        if self.bar is None:
            self.bar = Progress(total, desc="flow", unit="field", leave=False)
        self.bar.callback(done, total)
        if done >= total:
            self.bar.close()
            self.bar = None


def _run_batch(target, out, streams, options) -> int:
    import sys

    from datp.engine.predict_files import batch_settings, plan_batch, predict_batch
    from datp.localization import format_range
    from datp.progress import Progress

    batch = plan_batch(target, out, batch_settings(streams, **options))
    if batch.repeats:
        print(f"warning: {target}: {batch.repeats} line(s) name a video listed before; each of "
              f"the {len(batch.videos)} distinct videos is predicted once")
    todo = batch.todo
    if batch.finished:
        print(f"{batch.csv}: {len(batch.finished)} videos already predicted, {len(todo)} to go")
    failures = warned = 0
    with Progress(len(todo), desc="predict", unit="video") as bar:
        for outcome in predict_batch(batch, streams, **options):
            prediction = outcome.prediction
            if prediction is None:
                failures += 1
                bar.update(1)
                continue
            best, peaks = prediction.top[0], prediction.streams[0].peaks
            warned += bool(prediction.warnings)
            if peaks:
                bar.write(f"{outcome.video}: {best.name} ({100 * best.probability:.1f} %), key "
                          f"action {format_range(peaks[0])}")
            for warning in prediction.warnings:
                bar.write(f"warning: {warning}")
            bar.update(1)
    print(f"{len(batch.videos) - failures} of {len(batch.videos)} videos predicted; wrote "
          f"{batch.csv}")
    if warned:
        print(f"{warned} with a warning (column 'warning')")
    if failures:
        print(f"{failures} failed (status 'error' in the CSV)", file=sys.stderr)
    return 1 if failures else 0
