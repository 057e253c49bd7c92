"""Training pooling variants on the synthetic benchmark, what ``datp demo`` and the experiments
under ``experiments/`` share: the benchmark's size, the configs it trains from, its flow, one
training run that resumes, and where the temporal weights fall against the key windows the
generator recorded.

Dimension key: N segments.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datp
from datp.config import Config
from datp.data.synthetic import SynthConfig
from datp.engine.build import training_run
from datp.engine.inference import Collected
from datp.engine.train import train
from datp.run_state import saved_epoch

log = logging.getLogger(__name__)

CONFIGS = {
    stream: Path(datp.__file__).resolve().parent.parent / "configs" / f"synthetic_{stream}.toml"
    for stream in ("rgb", "flow", "features")
}
"""The recipe of each stream on the synthetic benchmark: ``configs/synthetic_<stream>.toml``
(``features``: a head on the features of a frozen backbone)."""


@dataclass(frozen=True)
class DemoSize:
    """The size of the synthetic benchmark and of its trainings (the demo's; the experiments
    start from it)."""

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


def size_overrides(data_root: Path, size: DemoSize, stream: str = "rgb") -> list[str]:
    """The overrides of ``configs/synthetic_<stream>.toml`` that train on ``data_root`` at
    ``size``."""
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


def train_unless_done(config: Config, run_dir: Path) -> None:
    """Train ``config`` into ``run_dir``, continuing from its last checkpoint when it has one,
    unless that checkpoint already holds the last epoch (a rerun of the demo only evaluates)."""
    checkpoint = run_dir / "checkpoints" / "last.pt"
    run = training_run(config, run_dir, resume=checkpoint.exists())
    epochs = run.settings.epochs
    if checkpoint.exists() and saved_epoch(checkpoint) == epochs - 1:
        return
    log.info("training %s (%d epochs)", run_dir.name, epochs)
    train(run)


# --- temporal weights against the key windows -----------------------------------------------------


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


def key_window_share(key_windows: dict, frames: int) -> float:
    """The mean share of a video its key window covers: what uniform weights put inside it."""
    return sum(e - s for s, e in key_windows.values()) / (len(key_windows) * frames)
