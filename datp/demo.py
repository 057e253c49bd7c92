"""The full demo: generate the synthetic benchmark, train average pooling and DATP on the RGB
stream, evaluate both, compare them, and draw the paper's Fig. 3 and Fig. 4 for this data.

Dimension key: N segments, C classes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datp.build import build_data_bundle, build_model
from datp.config import Config, load_config
from datp.data.synthetic import SynthConfig, generate, read_key_windows
from datp.evaluate import evaluate_checkpoint
from datp.fusion import fuse
from datp.inference import Collected
from datp.run_state import saved_epoch
from datp.scoring import FUSION_WEIGHTS, confusion_from_scores, per_class_accuracy, summarize
from datp.train import train

log = logging.getLogger(__name__)

CONFIGS = {
    stream: Path(__file__).resolve().parent.parent / "configs" / f"synthetic_{stream}.toml"
    for stream in ("rgb", "flow")
}


@dataclass(frozen=True)
class DemoSize:
    classes: int = 10
    videos_per_class: int = 24
    clips_per_group: int = 4
    frames: int = 48
    size: int = 64
    key_fraction: float = 0.25
    epochs: int = 20
    flow_epochs: int = 60
    """The flow stream trains longer: motion from scratch learns slower than colour."""
    batch_size: int = 8


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


def size_overrides(data_root: Path, size: DemoSize, stream: str = "rgb") -> list[str]:
    """The overrides of ``configs/synthetic_<stream>.toml`` that train on ``data_root`` at
    ``size`` (shared with the experiments under ``experiments/``)."""
    epochs = size.flow_epochs if stream == "flow" else size.epochs
    return [
        f"data.root={data_root}",
        f"data.image_size={size.size}",
        f"data.resize_short={size.size + size.size // 8}",
        f"train.epochs={epochs}",
        f"train.batch_size={size.batch_size}",
        f"train.lr_steps=[{max(1, round(0.75 * epochs))}]",
        f"train.eval_every={max(1, epochs // 4)}",
    ]


def synth_config(size: DemoSize, *, seed: int) -> SynthConfig:
    return SynthConfig(
        classes=size.classes,
        videos_per_class=size.videos_per_class,
        clips_per_group=size.clips_per_group,
        frames=size.frames,
        height=size.size,
        width=size.size,
        key_fraction=size.key_fraction,
        seed=seed,
    )


def demo_config(
    data_root: Path, size: DemoSize, overrides: list[str], *, stream: str = "rgb"
) -> Config:
    return load_config(CONFIGS[stream], [*size_overrides(data_root, size, stream), *overrides])


def run_name(stream: str, variant: str) -> str:
    return variant if stream == "rgb" else f"{stream}_{variant}"


def extract_synthetic_flow(data_root: Path, *, jobs: int = 2) -> Path:
    """TV-L1 flow (our torch backend) of every video under ``data_root/videos``, as compact
    files in ``data_root/flow`` at the videos' own size. Resumable: finished videos are kept."""
    from datp.data.video import VideoReader
    from datp.flow.extract import ExtractOptions, extract_dataset, find_videos

    media, out = data_root / "videos", data_root / "flow"
    videos = find_videos(media)
    with VideoReader(media / videos[0]) as reader:
        short_side = min(reader.read([0]).shape[1:3])  # small frames: no upsampling to 340x256
    options = ExtractOptions(backend="torch", fmt="compact", short_side=short_side, batch_size=16)
    started = time.perf_counter()
    failed = [r for r in extract_dataset(media, out, videos, options, jobs=jobs)
              if r.status == "failed"]
    if failed:
        raise RuntimeError(f"flow failed for {len(failed)} videos, first: {failed[0].error}")
    log.info("flow of %d videos in %s (%.0f s)", len(videos), out, time.perf_counter() - started)
    return out


def figure3_examples(
    collected: Collected, classes: list[str], key_windows: dict, frames: int, count: int = 6
) -> list[dict[str, Any]]:
    """Per-segment true-class probability and temporal weights of ``count`` videos spread over
    the test set (so over the classes)."""
    examples = []
    total = len(collected.videos)
    for i in sorted({round(k * (total - 1) / max(count - 1, 1)) for k in range(min(count, total))}):
        label = int(collected.labels[i])
        scores = collected.segment_scores[i].softmax(-1)[:, label]  # [N]
        window = key_windows.get(collected.videos[i])
        examples.append(
            {
                "name": f"{Path(collected.videos[i]).stem} ({classes[label]})",
                "times": collected.times[i],
                "true_class_score": scores,
                "weights": collected.weights[i],
                "key": None if window is None else (window[0] / frames, window[1] / frames),
            }
        )
    return examples


def weight_in_key_window(collected: Collected, key_windows: dict, frames: int) -> float:
    """Mean share of the temporal weight that falls on segments inside the key window."""
    shares = []
    for video, weights, times in zip(
        collected.videos, collected.weights, collected.times, strict=True
    ):
        if video not in key_windows:
            continue
        start, end = key_windows[video]
        inside = (times >= start / frames) & (times < end / frames)
        w = weights.abs() / weights.abs().sum().clamp_min(1e-12)
        shares.append(float((w * inside).sum()))
    return sum(shares) / max(len(shares), 1)


def run_demo(
    out: Path,
    *,
    size: DemoSize = DemoSize(),
    overrides: list[str] = (),
    seed: int = 0,
    streams: tuple[str, ...] = ("rgb",),
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the comparison it prints.

    ``streams``: ``("rgb",)`` or ``("rgb", "flow")``; with flow, TV-L1 flow is extracted once
    and the two streams are also fused (RGB 1 : flow 1.5, raw scores).
    """
    from datp.visualize import plot_class_changes, plot_confusion, plot_weights_beside_scores

    if tuple(streams) not in (("rgb",), ("rgb", "flow")):
        raise ValueError(f"streams must be ('rgb',) or ('rgb', 'flow'), got {streams}")
    out = Path(out)
    data_root = out / "data"
    if not (data_root / "synth.json").exists():
        generate(synth_config(size, seed=seed), data_root)
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
            done = (
                checkpoint.exists()
                and saved_epoch(checkpoint) == config.train.epochs - 1
            )
            if not done:
                data = build_data_bundle(config)
                model = build_model(config, num_classes=len(data.classes))
                log.info("training %s (%d epochs)", name, config.train.epochs)
                train(config, run_dir=run_dir, data=data, model=model, resume=checkpoint.exists())
            metrics, collected[name], classes = evaluate_checkpoint(
                checkpoint, out_dir=run_dir / "eval_datp"
            )
            plot_confusion(
                confusion_from_scores(collected[name].log_probs, collected[name].labels),
                classes, run_dir / "eval_datp" / "confusion.png",
            )
            metrics["weight_in_key_window"] = weight_in_key_window(
                collected[name], key_windows, size.frames
            )
            results[name] = metrics
    if len(streams) > 1:
        for variant_name in VARIANTS:
            scores, labels, _, _ = fuse(
                [out / run_name(s, variant_name) / "eval_datp" / "scores.pt" for s in streams],
                [FUSION_WEIGHTS[s] for s in streams],
            )
            results[f"fused_{variant_name}"] = summarize(scores, labels)
    key_share = sum(e - s for s, e in key_windows.values()) / (len(key_windows) * size.frames)
    results["key_window_share"] = key_share
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for name in collected:
        plot_weights_beside_scores(
            figure3_examples(collected[name], classes, key_windows, size.frames),
            figures / f"fig3_{name}.png",
            title=f"{name}: true-class score and temporal weights",
        )
    per_class = {
        name: per_class_accuracy(confusion_from_scores(c.log_probs, c.labels))
        for name, c in collected.items()
    }
    results["class_changes"] = plot_class_changes(
        per_class["average"], per_class["datp"], classes, figures / "fig4_class_changes.png"
    )
    (out / "comparison.json").write_text(json.dumps(results, indent=2))
    return results


def format_comparison(results: dict[str, Any]) -> str:
    lines = [
        f"{'stream':7s} {'pooling':10s} {'top1':>6s} {'mean class':>11s} "
        f"{'weight in key window':>21s}"
    ]
    for stream in results.get("streams", ["rgb"]):
        for variant in VARIANTS:
            r = results[run_name(stream, variant)]
            lines.append(
                f"{stream:7s} {variant:10s} {100 * r['top1']:6.1f} "
                f"{100 * r['mean_class_accuracy']:11.1f} {100 * r['weight_in_key_window']:20.1f}%"
            )
    for variant in VARIANTS:
        if f"fused_{variant}" in results:
            r = results[f"fused_{variant}"]
            lines.append(
                f"{'fused':7s} {variant:10s} {100 * r['top1']:6.1f} "
                f"{100 * r['mean_class_accuracy']:11.1f}   (RGB 1 : flow 1.5)"
            )
    lines.append(
        f"(the key window covers {100 * results['key_window_share']:.0f} % of each video;"
        " uniform weights put that share inside it)"
    )
    return "\n".join(lines)
