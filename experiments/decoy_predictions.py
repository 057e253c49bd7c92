"""How often a trained network predicts the decoy class instead of the true one (test split).

    python experiments/decoy_predictions.py [--seeds 3] [--fractions 0.1,0.25]

Every synthetic video has decoy windows pointing at one other class (``decoy_class`` in
``annotations/key_windows.csv``); averaging over all segments is pulled towards it. Reads the
cached evaluations of the networks the other scripts train (average pooling and DATP, RGB and
flow at key fraction 0.25) and trains nothing new: run it after them.
"""

from __future__ import annotations

import csv

from common import AVERAGE, datp_variant, flow_average, load_collected, parse_setting, scores_path

VARIANTS = {"average pooling": AVERAGE, "DATP (K = 2, conv)": datp_variant()}
FLOW_VARIANTS = {"average pooling": flow_average(), "DATP (K = 2, conv)":
                 datp_variant(modality="flow")}


def _fractions(parser) -> None:
    parser.add_argument("--fractions", default="0.1,0.25", help="key fractions (RGB)")


def decoy_classes(path) -> dict[str, int]:
    with open(path, newline="") as handle:
        return {row["video"]: int(row["decoy_class"]) for row in csv.DictReader(handle)}


def counts(setting, variant, seed: int, key_fraction: float) -> tuple[int, int, int]:
    """(videos, predicted the true class, predicted the decoy class)."""
    collected, _ = load_collected(scores_path(setting, variant, seed, key_fraction=key_fraction))
    decoys = decoy_classes(setting.data_root(key_fraction) / "annotations" / "key_windows.csv")
    predicted = collected.log_probs.argmax(-1).tolist()
    labels = collected.labels.tolist()
    true = sum(p == y for p, y in zip(predicted, labels, strict=True))
    decoy = sum(p == decoys[v] for p, v in zip(predicted, collected.videos, strict=True))
    return len(labels), true, decoy


def main() -> None:
    setting, args = parse_setting(__doc__, extra=_fractions)
    fractions = [float(f) for f in args.fractions.split(",")]
    rows = [(f"RGB, key fraction {f:g}", VARIANTS, f) for f in fractions]
    rows.append(("flow, key fraction 0.25", FLOW_VARIANTS, 0.25))
    print("test videos predicted as the true class / as the decoy class, per seed")
    for title, variants, fraction in rows:
        for label, variant in variants.items():
            found = [counts(setting, variant, s, fraction) for s in setting.seeds]
            cells = ", ".join(f"{t} / {d} of {n}" for n, t, d in found)
            print(f"  {title}, {label}: {cells}")


if __name__ == "__main__":
    main()
