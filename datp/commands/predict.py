"""``datp predict VIDEO --checkpoint CKPT [--flow-checkpoint CKPT]``: classify a video file and
show where the temporal weights peak. VIDEO may also be a folder (every video under it) or a
list file (``.txt`` / ``.lst``, one path per line): then one CSV row per video."""

from __future__ import annotations

import argparse

from datp.commands.options import (
    fraction,
    non_negative_float,
    positive_int,
    segment_count,
    short_side,
)
from datp.config import TEST_CROPS

LIST_SUFFIXES = (".txt", ".lst", ".list")
CSV_NAME = "predictions.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", help="a video file, a folder searched recursively, or a list file (.txt, .lst)"
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by datp train")
    parser.add_argument(
        "--flow-checkpoint", help="a flow-stream checkpoint to fuse with an RGB --checkpoint"
    )
    parser.add_argument(
        "--segments", type=segment_count,
        help="N (default: the checkpoint's test_segments); a mixture of Gaussians runs at any N, "
        "the discrete generator only at its training N",
    )
    parser.add_argument("--crops", type=int, choices=TEST_CROPS, help="crops per segment")
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
        "--flow-backend", default=None, choices=("torch", "opencv", "farneback", "dis"),
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
        help="output folder: <video>.json and <video>.png, or predictions.csv in batch mode",
    )


def _videos(target, *, find_videos):
    """Batch input: the videos of a folder, or the paths of a list file (relative to it), each
    distinct video once (in the order first listed); and how many lines named one again."""
    import os
    from pathlib import Path

    if target.is_dir():
        return [target / v for v in find_videos(target)], 0
    videos = {}
    repeats = 0
    for line in target.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            path = path if path.is_absolute() else target.parent / path
            key = os.path.realpath(path)  # a/./b.mp4, a/x/../b.mp4 and a link to it: one video
            repeats += key in videos
            videos.setdefault(key, path)
    return list(videos.values()), repeats


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datp.io import atomic_write_json
    from datp.localization import check_peak_fraction, format_range
    from datp.predict import predict_video
    from datp.scoring import validate_fusion_weights
    from datp.streams import check_streams, load_stream, read_class_list
    from datp.visualize import plot_prediction

    target = Path(args.video)
    out = Path(args.out)
    streams = [
        load_stream(
            path, segments=args.segments, crops=args.crops, overrides=args.overrides,
            device=args.device,
        )
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
    flow_streams = [s for s in streams if s.modality == "flow"]
    if flow_streams:
        from datp.flow.backends import build_backend

        recorded = flow_streams[0].flow_extraction or {}
        # Each setting on its own: what the user gave, else what training recorded.
        backend_name = args.flow_backend or recorded.get("backend", "torch")
        if args.flow_short_side is None:
            flow_short_side = recorded.get("short_side")
        from_record = [name for name, given in (("backend", args.flow_backend),
                                                ("size", args.flow_short_side))
                       if given is None and recorded]
        print(f"flow: {backend_name}, " + (
            f"short side {flow_short_side}" if flow_short_side else "340x256"
        ) + (f" ({' and '.join(from_record)} as recorded in the checkpoint)"
             if from_record else ""))
        # Eager: the few fields of one video do not repay a compile (about a minute).
        backend = build_backend(backend_name, device=args.device, compiled=False)

    options = dict(
        top_k=args.top_k,
        fusion_weights=args.fusion_weights[: len(streams)] if args.fusion_weights else None,
        fraction=args.peak_fraction,
        flow_backend=backend,
        flow_short_side=flow_short_side,
        progress=_FieldProgress(),
    )
    batch = target.is_dir() or target.suffix.lower() in LIST_SUFFIXES
    if batch:
        return _run_batch(target, out, streams, options)
    prediction = predict_video(target, streams, **options)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{target.stem}.json", out / f"{target.stem}.png"
    record = prediction.to_dict()
    atomic_write_json(json_path, record)
    plot_prediction(record, prediction.frames, png_path)
    print(f"{target}: {prediction.num_frames} frames", end="")
    print(f", {prediction.duration_s:.2f} s" if prediction.duration_s else "")
    for warning in prediction.warnings:
        print(f"warning: {warning}")
    for rank, score in enumerate(prediction.top, 1):
        print(f"{rank:>3}. {score.name:<30} {100 * score.probability:6.2f} %")
    for stream in prediction.streams:
        for i, peak in enumerate(stream.peaks):
            label = "key action" if i == 0 else "also"
            print(f"{label} ({stream.modality} weights): {format_range(peak)}")
    print(f"wrote {json_path} and {png_path}")
    return 0


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
    import csv
    import sys

    from datp.data.errors import DataError
    from datp.errors import UserError
    from datp.flow.extract import find_videos
    from datp.localization import format_range
    from datp.predict import predict_video
    from datp.progress import Progress

    try:
        videos, repeats = _videos(target, find_videos=find_videos)
    except UnicodeDecodeError as error:
        raise DataError(f"{target}: the list file is not valid UTF-8 ({error.reason})") from error
    if not videos:
        raise DataError(f"{target}: no videos to predict")
    if repeats:
        print(f"warning: {target}: {repeats} line(s) name a video listed before; each of the "
              f"{len(videos)} distinct videos is predicted once")
    k = options["top_k"]
    header = ["video", "status", "top1", "top1_probability", f"top{k}", "key_action_s",
              "key_action_frames", "warning", "error"]
    path = out / CSV_NAME
    # Resume: videos already predicted in an earlier, interrupted run are kept and skipped; each
    # row is flushed as soon as it exists, so an interruption loses at most the current video.
    done: set[str] = set()
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as handle:
            kept = [row for row in csv.reader(handle)][1:]
        kept = [row for row in kept if len(row) == len(header) and row[1] == "ok"]
        done = {row[0] for row in kept}
    else:
        kept = []
    out.mkdir(parents=True, exist_ok=True)
    failures = warned = 0
    todo = [video for video in videos if str(video) not in done]
    if done:
        print(f"{path}: {len(done)} videos already predicted, {len(todo)} to go")
    with open(path, "w", newline="", encoding="utf-8") as handle, \
            Progress(len(todo), desc="predict", unit="video") as bar:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept)
        handle.flush()
        for video in todo:
            try:
                prediction = predict_video(video, streams, keep_frames=False, **options)
            except (UserError, OSError) as error:  # one bad video: the rest go on
                failures += 1
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                writer.writerow([str(video), "error", "", "", "", "", "", "", first_line])
                handle.flush()
                bar.update(1)
                continue
            best = prediction.top[0]
            peaks = prediction.streams[0].peaks
            seconds = frames = ""
            if peaks:
                peak = peaks[0]
                if peak.start_s is not None:
                    seconds = f"{peak.start_s:.3f}-{peak.end_s:.3f}"
                frames = f"{peak.start_frame}-{peak.end_frame - 1}"
            ranked = ";".join(f"{s.name}:{s.probability:.4f}" for s in prediction.top)
            warned += bool(prediction.warnings)
            writer.writerow([str(video), "ok", best.name, f"{best.probability:.6f}", ranked,
                             seconds, frames, "; ".join(prediction.warnings), ""])
            handle.flush()
            if peaks:
                bar.write(f"{video}: {best.name} ({100 * best.probability:.1f} %), key action "
                          f"{format_range(peaks[0])}")
            for warning in prediction.warnings:
                bar.write(f"warning: {warning}")
            bar.update(1)
    print(f"{len(videos) - failures} of {len(videos)} videos predicted; wrote {path}")
    if warned:
        print(f"{warned} with a warning (column 'warning')")
    if failures:
        print(f"{failures} failed (status 'error' in the CSV)", file=sys.stderr)
    return 1 if failures else 0
