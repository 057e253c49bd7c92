"""``datp synth OUT``: write the synthetic benchmark (UCF101 layout) under OUT."""

from __future__ import annotations

import argparse

from datp.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created; existing files are overwritten)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--videos-per-class", type=int, default=20)
    parser.add_argument("--clips-per-group", type=int, default=4,
                        help="videos per group; a group shares a background, splits are by group")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT or one side, e.g. 96")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--key-fraction", type=float, default=0.3,
                        help="share of each video in which the class-defining action happens "
                        "(with --instances: the longest instance's share)")
    parser.add_argument("--decoys", type=int, default=2,
                        help="decoy windows per video that resemble one other class")
    parser.add_argument("--decoy-fraction", type=float, default=0.15,
                        help="length of each decoy window as a share of the video")
    parser.add_argument("--instances", type=int, default=0, metavar="K",
                        help="untrimmed videos with 1 to K instances of the class action among "
                        "decoys and background, ground truth in annotations/instances.json "
                        "(0: trimmed videos, one key window each)")
    parser.add_argument("--clutter", type=int, default=2, help="grey distractor objects")
    parser.add_argument("--camera-motion", type=float, default=0.5,
                        help="largest camera pan speed in pixels per frame")
    parser.add_argument("--noise", type=float, default=3.0, help="pixel noise std (0..255)")
    parser.add_argument("--texture", type=float, default=0.65,
                        help="contrast of the checker texture on every object (0: flat objects, "
                        "which TV-L1 barely sees on grey frames)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extension", default=".avi", choices=[".avi", ".mp4", ".mkv"])


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1 and parts[0].isdigit():
        return int(parts[0]), int(parts[0])
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    raise InputError(f"--size {text}: must be WIDTHxHEIGHT or one number, e.g. 96x64 or 64")


def run(args: argparse.Namespace) -> int:
    import time

    from datp.data.synthetic import SynthConfig, class_cues, generate

    width, height = _size(args.size)
    config = SynthConfig(
        classes=args.classes, videos_per_class=args.videos_per_class,
        clips_per_group=args.clips_per_group, frames=args.frames, height=height, width=width,
        fps=args.fps, key_fraction=args.key_fraction, decoys=args.decoys,
        decoy_fraction=args.decoy_fraction, instances=args.instances, clutter=args.clutter,
        camera_motion=args.camera_motion, noise=args.noise, texture=args.texture,
        seed=args.seed, extension=args.extension,
    )
    start = time.perf_counter()
    out = generate(config, args.out)
    seconds = time.perf_counter() - start
    total = config.classes * config.videos_per_class
    print(f"wrote {total} videos of {config.frames} frames at {width}x{height} "
          f"in {seconds:.1f} s to {out}")
    print("classes: " + ", ".join(cue.name for cue in class_cues(config)))
    print(f"lists: {out / 'ucfTrainTestlist'}; key windows: {out / 'annotations/key_windows.csv'}")
    if config.instances:
        print(f"instances (ActivityNet style, seconds): {out / 'annotations/instances.json'}")
    return 0
