"""The demo's job: generate the synthetic benchmark, train average pooling and DATP on the RGB
stream (and the flow stream), evaluate both, compare them, and draw the paper's Fig. 3 and Fig. 4
for this data. ``datp demo`` runs it and prints the comparison.

Dimension key: N segments, C classes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from datp.config import Config, load_config
from datp.data.synthetic import generate, read_key_windows, written_before
from datp.engine.build import evaluate_checkpoint
from datp.engine.fusion import fuse
from datp.engine.inference import Collected
from datp.engine.synthetic_runs import (
    CONFIGS,
    DemoSize,
    extract_synthetic_flow,
    figure3_examples,
    key_window_share,
    size_overrides,
    synth_config,
    train_unless_done,
    weight_in_key_window,
)
from datp.io import atomic_write_json
from datp.score_file import SCORES
from datp.scoring import FUSION_WEIGHTS, confusion_from_scores, per_class_accuracy, summarize

log = logging.getLogger(__name__)

FULL = DemoSize()
"""The demo's size; :data:`TINY` is a seconds-long smoke run."""

TINY = DemoSize(
    classes=3, videos_per_class=4, clips_per_group=2, frames=16, size=32, epochs=1, flow_epochs=1,
    batch_size=2,
)

VARIANTS: dict[str, list[str]] = {
    "average": ["pooling.kind=average", "pooling.pool=logits"],
    "datp": [
        "pooling.kind=datp",
        "pooling.generator=mog",
        "pooling.num_gaussians=2",
        "pooling.aux_input=conv",
    ],
}


def demo_config(
    data_root: Path, size: DemoSize, overrides: list[str], *, stream: str = "rgb"
) -> Config:
    return load_config(CONFIGS[stream], [*size_overrides(data_root, size, stream), *overrides])


def run_name(stream: str, variant: str) -> str:
    return variant if stream == "rgb" else f"{stream}_{variant}"


def run_demo(
    out: Path,
    *,
    size: DemoSize = FULL,
    overrides: list[str] = (),
    seed: int = 0,
    streams: tuple[str, ...] = ("rgb",),
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the comparison it prints.

    ``streams``: ``("rgb",)`` or ``("rgb", "flow")``; with flow, TV-L1 flow is extracted once
    and the two streams are also fused (RGB 1 : flow 1.5, raw scores).
    """
    if tuple(streams) not in (("rgb",), ("rgb", "flow")):
        raise ValueError(f"streams must be ('rgb',) or ('rgb', 'flow'), got {streams}")
    out = Path(out)
    data_root = out / "data"
    data_config = synth_config(size, seed=seed)
    if not written_before(data_config, data_root):  # another size or seed there: one line
        generate(data_config, data_root)
    if "flow" in streams:
        extract_synthetic_flow(data_root)
    key_windows = read_key_windows(data_root / "annotations" / "key_windows.csv")
    results: dict[str, Any] = {"streams": list(streams)}
    collected: dict[str, Collected] = {}
    classes: list[str] = []
    for stream in streams:
        for variant_name, variant in VARIANTS.items():
            name = run_name(stream, variant_name)
            config = demo_config(
                data_root, size, [*variant, f"train.seed={seed}", *overrides], stream=stream
            )
            run_dir = out / name
            checkpoint = run_dir / "checkpoints" / "last.pt"
            train_unless_done(config, run_dir)
            metrics, collected[name], classes = evaluate_checkpoint(
                checkpoint, out_dir=run_dir / "eval_datp", confusion_figure=True
            )
            metrics["weight_in_key_window"] = weight_in_key_window(
                collected[name], key_windows, size.frames
            )
            results[name] = metrics
    if len(streams) > 1:
        for variant_name in VARIANTS:
            scores, labels, _, _ = fuse(
                [out / run_name(s, variant_name) / "eval_datp" / SCORES for s in streams],
                [FUSION_WEIGHTS[s] for s in streams],
            )
            results[f"fused_{variant_name}"] = summarize(scores, labels)
    key_share = key_window_share(key_windows, size.frames)
    results["key_window_share"] = key_share
    results["class_changes"] = _draw_figures(out / "figures", collected, classes, key_windows,
                                             frames=size.frames)
    atomic_write_json(out / "comparison.json", results)
    return results


def _draw_figures(
    figures: Path, collected: dict[str, Collected], classes: list[str], key_windows: dict, *,
    frames: int,
) -> list[tuple[str, float]]:
    """Fig. 3 for each network (true-class score beside the temporal weights) and Fig. 4 (the
    classes whose accuracy DATP changes most); returns Fig. 4's changes."""
    from datp.engine.visualize import plot_class_changes, plot_weights_beside_scores

    figures.mkdir(exist_ok=True)
    for name in collected:
        plot_weights_beside_scores(
            figure3_examples(collected[name], classes, key_windows, frames),
            figures / f"fig3_{name}.png",
            title=f"{name}: true-class score and temporal weights",
        )
    per_class = {
        name: per_class_accuracy(confusion_from_scores(c.log_probs, c.labels))
        for name, c in collected.items()
    }
    return plot_class_changes(
        per_class["average"], per_class["datp"], classes, figures / "fig4_class_changes.png"
    )
