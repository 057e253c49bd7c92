"""Paper Table 3 in miniature: the weights generator, discrete weights vs a mixture of K = 1, 2, 3
Gaussians (conv-feature input, RGB stream, synthetic benchmark at key fraction 0.25). Discrete
weights twice: as the paper defines them (w = theta) and kept positive (w = softplus(theta)).

    python experiments/table3_generators.py [--seeds 3] [--set train.device=cuda]
"""

from __future__ import annotations

from common import datp_variant, parse_setting, run_grid, table, write_report

VARIANTS = {
    "discrete weights (the paper's: w = theta)": datp_variant(generator="discrete"),
    "discrete weights, w = softplus(theta)": datp_variant(generator="discrete",
                                                          discrete_activation="softplus"),
    "MoG, K = 1": datp_variant(k=1),
    "MoG, K = 2": datp_variant(k=2),
    "MoG, K = 3": datp_variant(k=3),
}


def main() -> None:
    setting, _ = parse_setting(__doc__)
    results = run_grid(setting, list(VARIANTS.values()))
    write_report(setting, "table3_generators",
                 "Table 3 (weights generator), RGB, conv features, key fraction 0.25\n\n"
                 + table(results, VARIANTS))


if __name__ == "__main__":
    main()
