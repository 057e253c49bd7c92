"""Paper Table 1 in miniature: what DATP's auxiliary net reads, softmax scores or conv features.

    python experiments/table1_inputs.py [--seeds 3] [--set train.device=cuda]

Both read by a mixture of K = 2 Gaussians, RGB stream, synthetic benchmark at key fraction 0.25;
average pooling is the reference row.
"""

from __future__ import annotations

from common import AVERAGE, datp_variant, parse_setting, run_grid, table, write_report

VARIANTS = {
    "average pooling (reference)": AVERAGE,
    "DATP, softmax-score input": datp_variant(aux_input="scores"),
    "DATP, conv-feature input": datp_variant(aux_input="conv"),
}


def main() -> None:
    setting, _ = parse_setting(__doc__)
    results = run_grid(setting, list(VARIANTS.values()))
    write_report(setting, "table1_inputs", "Table 1 (input features), RGB, key fraction 0.25\n\n"
                 + table(results, VARIANTS))


if __name__ == "__main__":
    main()
