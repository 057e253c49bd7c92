"""Shared machinery of the paper's experiments in miniature: the synthetic data they train on,
training variants over seeds, caching every result, and aggregating mean +- std.

Every experiment script trains into one folder (``--out``, default ``runs/experiments``), laid out
as ``<out>/kf<key fraction>/<variant>/seed<k>/``, so experiments that share a variant (the DATP
network of Table 1 is also the K = 2 row of Table 3 and the network of Table 4) train it once.
A result is cached in ``result.json`` as soon as it exists; an interrupted experiment resumes
where it stopped (an unfinished training resumes from its last checkpoint), and a cached
network that lacks a test scheme is only evaluated again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("experiments")



@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]
    evaluations: tuple[str, ...] = ("datp",)
    """Test schemes to evaluate the trained checkpoint with (datp = as trained)."""
    modality: str = "rgb"


AVERAGE = Variant("average", ("pooling.kind=average", "pooling.pool=logits"))


def datp_variant(
    *, aux_input: str = "conv", generator: str = "mog", k: int = 2, modality: str = "rgb",
    evaluations: tuple[str, ...] = ("datp",), discrete_activation: str = "identity",
) -> Variant:
    """The DATP network with one choice of Table 1 (input) and Table 3 (generator)."""
    name = f"datp_{aux_input}_" + (f"k{k}" if generator == "mog" else "discrete")
    if modality != "rgb":
        name = f"{modality}_{name}"
    overrides = (
        "pooling.kind=datp",
        f"pooling.aux_input={aux_input}",
        f"pooling.generator={generator}",
        f"pooling.num_gaussians={k}",
    )
    if generator == "discrete" and discrete_activation != "identity":
        name += f"_{discrete_activation}"
        overrides += (f"pooling.discrete_activation={discrete_activation}",)
    return Variant(name, overrides, evaluations, modality)


def flow_average() -> Variant:
    return Variant("flow_average", AVERAGE.overrides, modality="flow")


@dataclass(frozen=True)
class Setting:
    """Where and at what size an experiment runs."""

    out: Path
    seeds: tuple[int, ...]
    size: Any  # datp.engine.synthetic_runs.DemoSize
    overrides: tuple[str, ...] = ()

    def data_root(self, key_fraction: float) -> Path:
        return self.out / f"kf{key_fraction:g}" / "data"

    def run_dir(self, variant: Variant, seed: int, key_fraction: float) -> Path:
        return self.out / f"kf{key_fraction:g}" / variant.name / f"seed{seed}"


def parse_setting(description: str, argv: Sequence[str] | None = None,
                  extra: Callable[[argparse.ArgumentParser], None] | None = None,
                  ) -> tuple[Setting, argparse.Namespace]:
    """The command line every experiment shares; returns the setting and all parsed args."""
    from datp.engine.synthetic_runs import DemoSize

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default="runs/experiments", help="shared experiment folder")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (0 .. n-1)")
    parser.add_argument("--epochs", type=int, help="epochs per RGB training (default: the demo's)")
    parser.add_argument("--flow-epochs", type=int,
                        help="epochs per flow training (default: 3 x --epochs, or the demo's)")
    parser.add_argument("--classes", type=int, help="default: the demo's")
    parser.add_argument("--videos-per-class", type=int, help="default: the demo's")
    parser.add_argument("--frames", type=int, help="frames per video (default: the demo's)")
    parser.add_argument("--size", type=int, help="frame side in pixels (default: the demo's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override every training config (e.g. train.device=cuda)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    size = DemoSize()
    flow_epochs = args.flow_epochs or (3 * args.epochs if args.epochs else None)
    for field_name, value in (("epochs", args.epochs), ("flow_epochs", flow_epochs),
                              ("classes", args.classes), ("frames", args.frames),
                              ("videos_per_class", args.videos_per_class), ("size", args.size)):
        if value is not None:
            size = dataclasses.replace(size, **{field_name: value})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    setting = Setting(Path(args.out), tuple(range(args.seeds)), size, tuple(args.overrides))
    return setting, args


def synthetic_data(setting: Setting, key_fraction: float) -> Path:
    """The synthetic benchmark at this key fraction (data seed 0), generated once."""
    from datp.data.synthetic import generate, written_before
    from datp.engine.synthetic_runs import synth_config

    root = setting.data_root(key_fraction)
    config = synth_config(dataclasses.replace(setting.size, key_fraction=key_fraction), seed=0)
    if not written_before(config, root):  # other settings there (another --size): one line
        generate(config, root)
    return root


def run_variant(setting: Setting, variant: Variant, seed: int, *, key_fraction: float
                ) -> dict[str, Any]:
    """Train one variant for one seed (or reuse it) and evaluate every scheme it asks for."""
    from datp.config import load_config
    from datp.engine.build import evaluate_checkpoint
    from datp.engine.synthetic_runs import (
        CONFIGS,
        extract_synthetic_flow,
        size_overrides,
        train_unless_done,
    )

    data_root = synthetic_data(setting, key_fraction)
    run_dir = setting.run_dir(variant, seed, key_fraction)
    cached = run_dir / "result.json"
    result: dict[str, Any] = json.loads(cached.read_text()) if cached.exists() else {}
    checkpoint = run_dir / "checkpoints" / "last.pt"
    overrides = [*size_overrides(data_root, setting.size, variant.modality), *setting.overrides,
                 *variant.overrides, f"train.seed={seed}"]
    if result and result.get("overrides") != overrides:
        raise ValueError(
            f"{cached} was trained with other settings ({result.get('overrides')}); use another "
            "--out for these settings"
        )
    if not result:
        if variant.modality == "flow":
            extract_synthetic_flow(data_root)  # resumable: done once per data folder
        config = load_config(CONFIGS[variant.modality], overrides)
        started = time.perf_counter()
        train_unless_done(config, run_dir)
        result = {"variant": variant.name, "seed": seed, "key_fraction": key_fraction,
                  "train_seconds": time.perf_counter() - started, "overrides": overrides}
    missing = [s for s in variant.evaluations if s not in result]
    for scheme in missing:
        metrics = evaluate_checkpoint(checkpoint, scheme=scheme, seed=seed,
                                      out_dir=run_dir / f"eval_{scheme}").metrics
        result[scheme] = {k: v for k, v in metrics.items() if isinstance(v, float)}
    if missing:
        cached.write_text(json.dumps(result, indent=2))
        log.info("%s seed %d: %s", variant.name, seed,
                 {s: round(100 * result[s]["top1"], 1) for s in variant.evaluations})
    return result


def run_grid(setting: Setting, variants: Sequence[Variant], *, key_fraction: float = 0.25
             ) -> dict[str, list[dict[str, Any]]]:
    return {v.name: [run_variant(setting, v, s, key_fraction=key_fraction)
                     for s in setting.seeds] for v in variants}


def scores_path(setting: Setting, variant: Variant, seed: int, *, key_fraction: float = 0.25,
                scheme: str = "datp") -> Path:
    """The per-video scores an evaluation saved (for fusion and figures)."""
    from datp.score_file import SCORES

    return setting.run_dir(variant, seed, key_fraction) / f"eval_{scheme}" / SCORES


def load_collected(path: Path):
    """A saved evaluation (``scores.pt``) as ``(datp.engine.evaluate.Collected, class names)``."""
    from datp.engine.fusion import load_scores
    from datp.engine.inference import Collected

    scores = load_scores(path)
    return Collected.of(scores), scores.classes


def weight_share_in_key_window(setting: Setting, variant: Variant,
                               key_fraction: float = 0.25) -> list[float]:
    """Per seed, the mean share of ``variant``'s temporal weight on segments inside the key
    window (test split)."""
    from datp.data.synthetic import read_key_windows
    from datp.engine.synthetic_runs import weight_in_key_window

    root = setting.data_root(key_fraction)
    key_windows = read_key_windows(root / "annotations" / "key_windows.csv")
    return [weight_in_key_window(load_collected(scores_path(setting, variant, seed,
                                                            key_fraction=key_fraction))[0],
                                 key_windows, setting.size.frames)
            for seed in setting.seeds]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: Sequence[float]) -> str:
    """``mean +- std [per seed]`` in percent: the seeds' own values are what docs/RESULTS.md
    quotes beside each mean."""
    percent = [100 * v for v in values]
    mean, std = mean_std(percent)
    return f"{mean:.1f} +- {std:.1f} [{', '.join(f'{v:.1f}' for v in percent)}]"


def table(results: dict[str, list[dict[str, Any]]], variants: dict[str, Variant], *,
          schemes: Sequence[str] = ("datp",),
          metrics: Sequence[str] = ("top1", "mean_class_accuracy")) -> str:
    """A markdown table of mean +- std (in %) over seeds, a row per ``{label: variant}``."""
    columns = [f"{s} {m}" if len(schemes) > 1 else m for s in schemes for m in metrics]
    lines = ["| variant | " + " | ".join(columns) + " | seeds |",
             "|---" * (len(columns) + 2) + "|"]
    for label, variant in variants.items():
        runs = results[variant.name]
        cells = []
        for scheme in schemes:
            for metric in metrics:
                values = [r[scheme][metric] for r in runs if scheme in r]
                cells.append(cell(values) if values else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(runs)} |")
    return "\n".join(lines)


def write_report(setting: Setting, name: str, text: str) -> None:
    """Print ``text`` and keep it as ``<out>/<name>.md``."""
    print(text)
    path = setting.out / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
