"""Paper Tables 5 and 6 in miniature: DATP vs average pooling on each stream and fused.

    python experiments/table5_streams.py [--seeds 3] [--set train.device=cuda]

RGB and TV-L1 flow streams (flow extracted once with our torch TV-L1 into <data>/flow), each
trained on its own; late fusion of the pooled vectors with weights 1 (RGB) : 1.5 (flow), raw
scores as TSN does. Synthetic benchmark at key fraction 0.25, DATP with K = 2 on conv features.
"""

from __future__ import annotations

from common import (
    AVERAGE,
    cell,
    datp_variant,
    flow_average,
    mean_std,
    parse_setting,
    run_grid,
    scores_path,
    weight_share_in_key_window,
    write_report,
)

from datp.engine.fusion import fuse
from datp.scoring import FUSION_WEIGHTS, summarize

PAIRS = {  # pooling -> (RGB variant, flow variant)
    "average pooling": (AVERAGE, flow_average()),
    "DATP (K = 2, conv)": (datp_variant(), datp_variant(modality="flow")),
}


OTHER_WEIGHTS = ((1.0, 1.0), (1.5, 1.0))
"""(RGB, flow) weights reported beside the paper's, to show where fusion goes; chosen after
seeing the test set, so they are not results."""


def fused_metrics(setting, rgb, flow, seed: int,
                  weights: tuple[float, float] = (FUSION_WEIGHTS["rgb"], FUSION_WEIGHTS["flow"]),
                  ) -> dict[str, float]:
    scores, labels, _, _ = fuse(
        [scores_path(setting, rgb, seed), scores_path(setting, flow, seed)], list(weights)
    )
    return summarize(scores, labels)


def main() -> None:
    setting, _ = parse_setting(__doc__)
    variants = [v for pair in PAIRS.values() for v in pair]
    results = run_grid(setting, variants)
    lines = ["Tables 5/6 (streams and fusion), key fraction 0.25, top1 (mean class accuracy)", "",
             "| pooling | RGB | flow | fused 1 : 1.5 | seeds |", "|---|---|---|---|---|"]
    for label, (rgb, flow) in PAIRS.items():
        cells = []
        for runs in (results[rgb.name], results[flow.name]):
            cells.append(f"{cell([r['datp']['top1'] for r in runs])} "
                         f"({cell([r['datp']['mean_class_accuracy'] for r in runs])})")
        fused = [fused_metrics(setting, rgb, flow, s) for s in setting.seeds]
        cells.append(f"{cell([f['top1'] for f in fused])} "
                     f"({cell([f['mean_class_accuracy'] for f in fused])})")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(setting.seeds)} |")
    lines += ["", "Other fusion weights (chosen after seeing the test set: not results), top1:", ""]
    for label, (rgb, flow) in PAIRS.items():
        cells = [f"RGB {w[0]:g} : flow {w[1]:g} "
                 + cell([fused_metrics(setting, rgb, flow, s, w)["top1"] for s in setting.seeds])
                 for w in OTHER_WEIGHTS]
        lines.append(f"- {label}: " + ", ".join(cells))
    lines += ["", "Share of the temporal weight inside the key window (25 % of each video):", ""]
    for label, (rgb, flow) in PAIRS.items():
        shares = []
        for variant in (rgb, flow):
            mean, std = mean_std(weight_share_in_key_window(setting, variant))
            shares.append(f"{100 * mean:.1f} +- {100 * std:.1f} %")
        lines.append(f"- {label}: RGB {shares[0]}, flow {shares[1]}")
    write_report(setting, "table5_streams", "\n".join(lines))


if __name__ == "__main__":
    main()
