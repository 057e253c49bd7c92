"""Heads on cached features beside the end-to-end networks (issue 26), on the synthetic benchmark
at key fraction 0.25, in one command:

    python experiments/features_heads.py [--seeds 3] [--out runs/experiments]

For each seed: the end-to-end RGB networks of Table 1 (average pooling, and DATP with K = 2
Gaussians on conv features; trained once, shared with the other experiments under --out), the
features of every video extracted with each network's frozen backbone (``datp features
--checkpoint``: its globally pooled conv maps, one centre crop, float16; no download), and two
heads trained on each set of features (``configs/synthetic_features.toml``): average pooling
(logits, TSN's) and DATP (K = 2, its auxiliary net reading the feature sequence). Prints the
table and keeps it as ``<out>/features_heads.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import (
    AVERAGE,
    Setting,
    Variant,
    datp_variant,
    log,
    parse_setting,
    run_grid,
    run_variant,
    synthetic_data,
    table,
    write_report,
)

KEY_FRACTION = 0.25
BACKBONES = {"average": AVERAGE, "DATP": datp_variant()}
"""The end-to-end networks whose backbones make the features: Table 1's."""
HEADS = {
    "average pooling": ("pooling.kind=average", "pooling.pool=logits"),
    "DATP (K = 2, sequence)": ("pooling.kind=datp", "pooling.aux_input=sequence",
                               "pooling.generator=mog", "pooling.num_gaussians=2"),
}


def extract(setting: Setting, network: Variant, seed: int) -> Path:
    """The features of every video of the benchmark by ``network``'s backbone at ``seed``
    (``datp features`` into ``<out>/kf0.25/features_<network>/seed<k>``, resumable)."""
    from datp.engine.features import checkpoint_backbone
    from datp.features.extract import FeatureOptions, extract_features, resolve_grid
    from datp.features.sources import list_sources

    data_root = synthetic_data(setting, KEY_FRACTION)
    out = setting.out / f"kf{KEY_FRACTION:g}" / f"features_{network.name}" / f"seed{seed}"
    checkpoint = setting.run_dir(network, seed, KEY_FRACTION) / "checkpoints" / "last.pt"
    backbone = checkpoint_backbone(checkpoint)
    base, videos = list_sources(data_root / "videos")
    started = time.perf_counter()
    results = list(extract_features(base, out, videos, backbone,
                                    FeatureOptions(grid=resolve_grid(backbone))))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"features failed for {len(failed)} videos: {failed[0].error}")
    done = sum(r.status == "done" for r in results)
    if done:
        log.info("features of %d videos by %s seed %d in %.0f s", done, network.name, seed,
                 time.perf_counter() - started)
    return out


def head_variant(network: Variant, label: str) -> Variant:
    kind = "average" if label.startswith("average") else "datp_sequence_k2"
    return Variant(f"head_{kind}_on_{network.name}", HEADS[label], modality="features")


def main() -> None:
    setting, _ = parse_setting(__doc__)
    end_to_end = run_grid(setting, list(BACKBONES.values()), key_fraction=KEY_FRACTION)
    heads: dict[str, list[dict]] = {}
    rows: dict[str, Variant] = {}
    for name, network in BACKBONES.items():
        for label in HEADS:
            variant = head_variant(network, label)
            rows[f"{label} on the {name} network's features"] = variant
            for seed in setting.seeds:
                features = extract(setting, network, seed).resolve()  # not under data.root
                at_seed = Setting(setting.out, (seed,), setting.size,
                                  (*setting.overrides, f"data.features_root={features}"))
                heads.setdefault(variant.name, []).append(
                    run_variant(at_seed, variant, seed, key_fraction=KEY_FRACTION))
    text = (
        "Heads on cached features beside the end-to-end networks, RGB, key fraction 0.25\n\n"
        "End to end (the backbone trained with its pooling):\n\n"
        + table(end_to_end, {f"{name} pooling, end to end": v for name, v in BACKBONES.items()})
        + "\n\nHeads on the frozen features of each end-to-end network's backbone:\n\n"
        + table(heads, rows))
    write_report(setting, "features_heads", text)


if __name__ == "__main__":
    main()
