"""Paper Table 1 in miniature: what DATP's auxiliary net reads, softmax scores or conv features.

    python experiments/table1_inputs.py [--seeds 3] [--set train.device=cuda]

Both read by a mixture of K = 2 Gaussians, RGB stream, synthetic benchmark at key fraction 0.25;
average pooling is the reference row.
"""

from __future__ import annotations

from common import AVERAGE, datp_variant, parse_setting, run_grid, table, write_report

VARIANTS = [AVERAGE, datp_variant(aux_input="scores"), datp_variant(aux_input="conv")]
LABELS = {
    "average": "average pooling (reference)",
    "datp_scores_k2": "DATP, softmax-score input",
    "datp_conv_k2": "DATP, conv-feature input",
}


def main() -> None:
    setting, _ = parse_setting(__doc__)
    results = run_grid(setting, VARIANTS)
    write_report(setting, "table1_inputs", "Table 1 (input features), RGB, key fraction 0.25\n\n"
                 + table(results, label=LABELS.get))


if __name__ == "__main__":
    main()
