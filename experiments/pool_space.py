"""What Eq. (3) pools, a choice the paper leaves open: softmax probabilities (the paper) or raw
logits (TSN's convention), for DATP (K = 2, conv) and for average pooling (RGB, synthetic
benchmark at key fraction 0.25).

    python experiments/pool_space.py [--seeds 3] [--set train.device=cuda]
"""

from __future__ import annotations

from dataclasses import replace

from common import AVERAGE, Variant, datp_variant, parse_setting, run_grid, table, write_report

DATP = datp_variant()  # pools probabilities, the config's default
VARIANTS = {
    "DATP, probabilities (the paper)": DATP,
    "DATP, logits": Variant("datp_conv_k2_logits", (*DATP.overrides, "pooling.pool=logits")),
    "average, logits (TSN)": AVERAGE,
    "average, probabilities": replace(AVERAGE, name="average_probabilities",
                                      overrides=("pooling.kind=average",
                                                 "pooling.pool=probabilities")),
}


def main() -> None:
    setting, _ = parse_setting(__doc__)
    results = run_grid(setting, list(VARIANTS.values()))
    write_report(setting, "pool_space", "What Eq. (3) pools, RGB, key fraction 0.25\n\n"
                 + table(results, VARIANTS))


if __name__ == "__main__":
    main()
