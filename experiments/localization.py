"""Weak localization on the untrimmed synthetic benchmark (issue 27): localization mAP at tIoU 0.5
and the THUMOS14 average (0.1:0.1:0.7) of DATP (MoG K = 1, 2, 3), attention, random Gaussians
and average pooling, each trained on video labels only.

    python experiments/localization.py [--seeds 3] [--instances 3] [--train-segments 16]
                                       [--test-segments 48] [--set train.device=cuda]

Data (``datp synth --instances 3``, data seed 0): the demo's 10 classes x 24 videos at 64x64,
but 96 frames (3.84 s at 25 fps) and key fraction 0.2: each video holds 1 to 3 instances of its
class action, each 10 to 19 frames long, at random places among decoys (one other class's
colour or motion) and background. Split 1: 160 videos train, 80 test; the ground truth of the
test videos is ``annotations/instances.json``.

Each network trains at N = ``--train-segments`` (16: 6 frames a segment; the demo's 8 left the
mixture broad on instances of one or two segments) and is evaluated at N = ``--test-segments``
(48: every second frame, the pooling evaluated at every segment). Its ``scores.pt`` is localized
twice with :mod:`datp.detection`'s settings, fixed before any run (nothing is tuned on the test
ground truth): the per-step class probabilities weighted with the pooling's weights (a
mixture's Gaussians evaluated on the dense grid, the attention interpolated), and the per-step
scores alone. Random Gaussians: the DATP K = 2 network under the P1 scheme (a random mixture of
2 Gaussians per video in place of its own), which says what a mixture placed by chance gives.

Runs are cached as the other experiments' are: ``<out>/untrimmed/<variant>/seed<k>/result.json``
(an interrupted run resumes; a cached network is only localized again when asked for more).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from common import Setting, Variant, cell, datp_variant, log, parse_setting, write_report

ATTENTION = Variant("attention", ("pooling.kind=attention", "pooling.pool=logits",
                                  "pooling.aux_input=conv"))
AVERAGE = Variant("average", ("pooling.kind=average", "pooling.pool=logits"))
DATP_K2 = datp_variant(k=2, evaluations=("datp", "p1"))
ROWS: dict[str, tuple[Variant, str]] = {
    "DATP, MoG K = 1": (datp_variant(k=1), "datp"),
    "DATP, MoG K = 2": (DATP_K2, "datp"),
    "DATP, MoG K = 3": (datp_variant(k=3), "datp"),
    "attention": (ATTENTION, "datp"),
    "random Gaussians (P1 on the K = 2 network)": (DATP_K2, "p1"),
    "average": (AVERAGE, "datp"),
}
"""Each row of the table: a trained variant and the test scheme it is localized under."""
WEIGHTS = {"pooling": "weighted", "components": "equal Gaussians", "none": "scores alone"}
"""Localized with the pooling's weights; with a mixture's Gaussians at equal height (rho
ignored: added after the first run showed the learned rho on one Gaussian, see
docs/RESULTS.md); and from the per-step scores alone."""


def options(parser) -> None:
    parser.add_argument("--instances", type=int, default=3, help="1 to K instances per video")
    parser.add_argument("--key-fraction", type=float, default=0.2,
                        help="the longest instance's share of the video")
    parser.add_argument("--train-segments", type=int, default=16, help="N in training")
    parser.add_argument("--test-segments", type=int, default=48, help="N at test time")


def untrimmed_data(setting: Setting, *, instances: int) -> Path:
    """The untrimmed benchmark at the setting's size (data seed 0), generated once."""
    from datp.data.synthetic import generate, written_before
    from datp.engine.synthetic_runs import synth_config

    root = setting.out / "untrimmed" / "data"
    config = dataclasses.replace(synth_config(setting.size, seed=0), instances=instances)
    if not written_before(config, root):  # other settings there: one line
        started = time.perf_counter()
        generate(config, root)
        log.info("untrimmed data in %s (%.0f s)", root, time.perf_counter() - started)
    return root


def localized(scores_file: Path, annotations: Path, weights: str) -> dict[str, float]:
    """mAP@0.5 and the average mAPs (fractions) of one evaluation's scores."""
    from datp.engine.localize import localize_evaluation
    from datp.score_file import ScoreFile

    entry = localize_evaluation([ScoreFile.load(scores_file)], annotations, weights=weights).entry
    return {"mAP@0.5": entry["mAP"]["0.5"] / 100,
            **{f"average_{name}": value / 100 for name, value in entry["average_mAP"].items()},
            "weighted_with": entry["protocol"]["weighted_with"]}


def mixture_diagnostics(scores_file: Path, annotations: Path) -> dict[str, float]:
    """Where a mixture pooling's Gaussians fall against the test videos' instances (what the
    localization table cannot say): the share of videos whose strongest Gaussian's mean lies
    inside an instance against the share of the video the instances cover (what a mean placed
    at random hits), the Gaussians per video with rho >= 0.1, the median sigma and the mean
    instance length (both as shares of the video), and the instances per video."""
    import statistics

    from datp.data.temporal_annotations import read_temporal_annotations
    from datp.score_file import ScoreFile

    scores = ScoreFile.load(scores_file)
    videos = read_temporal_annotations(annotations).videos
    inside, covered, used, sigmas, lengths, counts = [], [], [], [], [], []
    for video, mixture in zip(scores.videos, scores.mixtures, strict=True):
        rho, mu, sigma = mixture.double()
        annotated = videos[video]
        spans = [(i.start / annotated.duration, i.end / annotated.duration)
                 for i in annotated.instances]
        strongest = float(mu[int(rho.argmax())])
        inside.append(any(s <= strongest <= e for s, e in spans))
        covered.append(sum(e - s for s, e in spans))
        used.append(int((rho >= 0.1).sum()))
        sigmas += sigma.tolist()
        lengths += [e - s for s, e in spans]
        counts.append(len(spans))
    return {"strongest_inside": statistics.mean(inside), "covered": statistics.mean(covered),
            "gaussians_used": statistics.mean(used),
            "median_sigma": statistics.median(sigmas), "instance_length": statistics.mean(lengths),
            "instances": statistics.mean(counts)}


def run(setting: Setting, variant: Variant, seed: int, *, data_root: Path, args) -> dict[str, Any]:
    """Train one variant for one seed (or reuse it), evaluate it under each of its schemes at
    the test N, and localize each evaluation both ways."""
    from datp.config import load_config
    from datp.engine.build import evaluate_checkpoint
    from datp.engine.synthetic_runs import CONFIGS, size_overrides, train_unless_done
    from datp.score_file import SCORES, ScoreFile

    run_dir = setting.out / "untrimmed" / variant.name / f"seed{seed}"
    cached = run_dir / "result.json"
    result: dict[str, Any] = json.loads(cached.read_text()) if cached.exists() else {}
    epochs = setting.size.epochs
    overrides = [*size_overrides(data_root, setting.size), f"train.eval_every={epochs}",
                 f"data.num_segments={args.train_segments}",
                 f"data.test_segments={args.train_segments}", *setting.overrides,
                 *variant.overrides, f"train.seed={seed}"]
    if result and result.get("overrides") != overrides:
        raise ValueError(f"{cached} was trained with other settings; use another --out")
    if not result:
        started = time.perf_counter()
        train_unless_done(load_config(CONFIGS["rgb"], overrides), run_dir)
        result = {"variant": variant.name, "seed": seed, "overrides": overrides,
                  "train_seconds": time.perf_counter() - started}
    annotations = data_root / "annotations" / "instances.json"
    changed = False
    for scheme in variant.evaluations:
        out = run_dir / f"eval_{scheme}"
        if scheme not in result:
            metrics = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt", scheme=scheme,
                                          segments=args.test_segments, seed=seed,
                                          out_dir=out).metrics
            result[scheme] = {"top1": metrics["top1"], "localization": {}}
        done = result[scheme]["localization"]
        for weights in [w for w in WEIGHTS if w not in done]:  # from the saved scores
            done[weights] = localized(out / SCORES, annotations, weights)
            changed = True
        if "mixture" not in result[scheme] and ScoreFile.load(out / SCORES).mixtures:
            result[scheme]["mixture"] = mixture_diagnostics(out / SCORES, annotations)
            changed = True
    if changed:
        cached.write_text(json.dumps(result, indent=2))
        log.info("%s seed %d: %s", variant.name, seed, {
            s: {w: round(100 * result[s]["localization"][w]["mAP@0.5"], 1) for w in WEIGHTS}
            for s in variant.evaluations})
    return result


def table(results: dict[tuple[str, int], dict[str, Any]], seeds: tuple[int, ...]) -> str:
    columns = [f"{metric}, {name}" for name in WEIGHTS.values()
               for metric in ("mAP@0.5", "mAP 0.1:0.7")] + ["top-1", "weighted with"]
    lines = ["| pooling | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, (variant, scheme) in ROWS.items():
        runs = [results[(variant.name, seed)][scheme] for seed in seeds]
        cells = [cell([r["localization"][w][key] for r in runs])
                 for w in WEIGHTS for key in ("mAP@0.5", "average_thumos14")]
        cells.append(cell([r["top1"] for r in runs]))
        cells.append(runs[0]["localization"]["pooling"]["weighted_with"])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Where the mixtures fall on the test videos (the first column in %, mean +- std "
              "[per seed]; then per seed; the data's own figures last; times as shares of the "
              "video):", "",
              "| pooling | strongest Gaussian's mean inside an instance | Gaussians with rho >= "
              "0.1 | median sigma | share of the video in instances | mean instance length | "
              "instances per video |", "|---|---|---|---|---|---|---|"]
    for label, (variant, scheme) in ROWS.items():
        runs = [results[(variant.name, seed)][scheme].get("mixture") for seed in seeds]
        if None in runs:
            continue
        inside = cell([r["strongest_inside"] for r in runs])
        per_seed = ["[" + ", ".join(f"{r[key]:.3g}" for r in runs) + "]"
                    for key in ("gaussians_used", "median_sigma")]
        data = [f"{runs[0][key]:.3g}" for key in ("covered", "instance_length", "instances")]
        lines.append(f"| {label} | {inside} | " + " | ".join(per_seed + data) + " |")
    return "\n".join(lines)


def main() -> None:
    setting, args = parse_setting(__doc__, extra=options)
    if args.frames is None:
        setting = dataclasses.replace(setting, size=dataclasses.replace(setting.size, frames=96))
    setting = dataclasses.replace(setting, size=dataclasses.replace(
        setting.size, key_fraction=args.key_fraction))
    data_root = untrimmed_data(setting, instances=args.instances)
    variants = list(dict.fromkeys(variant for variant, _ in ROWS.values()))
    results = {(v.name, seed): run(setting, v, seed, data_root=data_root, args=args)
               for seed in setting.seeds for v in variants}
    size = setting.size
    write_report(setting, "localization",
                 f"Weak localization, untrimmed synthetic benchmark ({size.frames} frames, 1 to "
                 f"{args.instances} instances, key fraction {size.key_fraction}), trained at "
                 f"N = {args.train_segments}, tested at N = {args.test_segments}, "
                 f"{len(setting.seeds)} seeds; mAP in %, mean +- std [per seed]\n\n"
                 + table(results, setting.seeds))


if __name__ == "__main__":
    main()
