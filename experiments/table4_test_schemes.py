"""Paper Table 4 in miniature: the test schemes (RGB, synthetic benchmark, key fraction 0.25).

    python experiments/table4_test_schemes.py [--seeds 3] [--set train.device=cuda]

P1: the DATP-trained network with a random mixture of 2 Gaussians per video instead of its
pooling; P2: the DATP-trained network, average of per-segment scores over 25 segments; P3: an
average-trained network, the same average; DATP: the DATP-trained network as trained.
"""

from __future__ import annotations

from dataclasses import replace

from common import AVERAGE, cell, datp_variant, parse_setting, run_grid, write_report

DATP = datp_variant(evaluations=("datp", "p1", "p2"))
AVERAGE_P3 = replace(AVERAGE, evaluations=("datp", "p3"))
ROWS = [
    ("P1: DATP network, random Gaussians", DATP, "p1"),
    ("P2: DATP network, average of 25", DATP, "p2"),
    ("P3: average network, average of 25", AVERAGE_P3, "p3"),
    ("DATP network, DATP pooling", DATP, "datp"),
]


def main() -> None:
    setting, _ = parse_setting(__doc__)
    results = run_grid(setting, [DATP, AVERAGE_P3])
    lines = ["Table 4 (test schemes), RGB, conv features, K = 2, key fraction 0.25", "",
             "| scheme | top1 | mean class accuracy | seeds |", "|---|---|---|---|"]
    for label, variant, scheme in ROWS:
        runs = results[variant.name]
        lines.append(f"| {label} | {cell([r[scheme]['top1'] for r in runs])} | "
                     f"{cell([r[scheme]['mean_class_accuracy'] for r in runs])} | {len(runs)} |")
    write_report(setting, "table4_test_schemes", "\n".join(lines))


if __name__ == "__main__":
    main()
