"""Paper Figures 3 and 4 in miniature, from the networks Table 1 trains (RGB, key fraction 0.25).

    python experiments/figures.py [--seeds 3]

Figure 3: for six test videos, the per-segment softmax score of the true class beside the
temporal weights DATP generated, with the ground-truth key window shaded. Figure 4: the five
largest and five smallest per-class accuracy changes from average pooling to DATP, per-class
accuracies averaged over the seeds. Also reports how much of DATP's weight falls inside the key
window, against the window's share of the video.
"""

from __future__ import annotations

import torch
from common import (
    AVERAGE,
    datp_variant,
    load_collected,
    mean_std,
    parse_setting,
    run_grid,
    scores_path,
    weight_share_in_key_window,
)
from common import write_report as report

from datp.data.synthetic import read_key_windows
from datp.engine.synthetic_runs import figure3_examples, key_window_share
from datp.engine.visualize import plot_class_changes, plot_weights_beside_scores
from datp.scoring import confusion_from_scores, per_class_accuracy

KEY_FRACTION = 0.25


def main() -> None:
    setting, _ = parse_setting(__doc__)
    datp = datp_variant()
    run_grid(setting, [AVERAGE, datp])
    data_root = setting.data_root(KEY_FRACTION)
    key_windows = read_key_windows(data_root / "annotations" / "key_windows.csv")
    frames = setting.size.frames
    out = setting.out / "figures"
    out.mkdir(parents=True, exist_ok=True)

    collected, classes = load_collected(scores_path(setting, datp, setting.seeds[0]))
    plot_weights_beside_scores(
        figure3_examples(collected, classes, key_windows, frames),
        out / "fig3_datp.png", title="DATP (K = 2, conv): true-class score and temporal weights",
    )
    per_class = {"average": [], "datp": []}
    for seed in setting.seeds:
        for name, variant in (("average", AVERAGE), ("datp", datp)):
            c, _ = load_collected(scores_path(setting, variant, seed))
            confusion = confusion_from_scores(c.log_probs, c.labels)
            per_class[name].append(per_class_accuracy(confusion))
    shares = weight_share_in_key_window(setting, datp, KEY_FRACTION)
    mean = {name: torch.stack(v).mean(0) for name, v in per_class.items()}
    changes = plot_class_changes(mean["average"], mean["datp"], classes,
                                 out / "fig4_class_changes.png")
    share, std = mean_std(shares)
    window = key_window_share(key_windows, frames)
    lines = [
        f"Figure 3: {out / 'fig3_datp.png'}; Figure 4: {out / 'fig4_class_changes.png'}", "",
        f"DATP weight inside the key window: {100 * share:.1f} +- {100 * std:.1f} % "
        f"(the window covers {100 * window:.0f} % of each video; {len(shares)} seeds)", "",
        "| class | accuracy change, DATP - average (points, mean over seeds) |", "|---|---|",
        *[f"| {name} | {100 * value:+.1f} |" for name, value in changes],
    ]
    report(setting, "figures", "\n".join(lines))


if __name__ == "__main__":
    main()
