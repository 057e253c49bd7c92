"""A curve the paper does not have: accuracy against the key-action fraction, average pooling vs
DATP (RGB, K = 2 on conv features), on the synthetic benchmark.

    python experiments/key_fraction.py [--fractions 0.1,0.25,0.5] [--seeds 3]

The key-action fraction is the share of each video in which the class-defining action happens;
the rest shows decoys of other classes. The paper's premise is that average pooling suffers as it
shrinks and DATP does not.
"""

from __future__ import annotations

from common import AVERAGE, cell, datp_variant, mean_std, parse_setting, run_grid, write_report

from datp.engine.visualize import plot_curves

VARIANTS = {"average pooling": AVERAGE, "DATP (K = 2, conv)": datp_variant()}


def _fractions(parser) -> None:
    parser.add_argument("--fractions", default="0.1,0.25,0.5",
                        help="comma-separated key-action fractions")


def main() -> None:
    setting, args = parse_setting(__doc__, extra=_fractions)
    fractions = [float(f) for f in args.fractions.split(",")]
    results = {f: run_grid(setting, list(VARIANTS.values()), key_fraction=f) for f in fractions}
    lines = ["Top1 against the key-action fraction, RGB", "",
             "| key fraction | " + " | ".join(VARIANTS) + " | seeds |",
             "|---" * (len(VARIANTS) + 2) + "|"]
    curves = {}
    for label, variant in VARIANTS.items():
        stats = [mean_std([r["datp"]["top1"] for r in results[f][variant.name]])
                 for f in fractions]
        curves[label] = ([m for m, _ in stats], [s for _, s in stats])
    for f in fractions:
        cells = [cell([r["datp"]["top1"] for r in results[f][v.name]]) for v in VARIANTS.values()]
        lines.append(f"| {f:g} | " + " | ".join(cells) + f" | {len(setting.seeds)} |")
    figure = setting.out / "key_fraction.png"
    plot_curves(fractions, curves, figure, xlabel="key-action fraction of each video",
                ylabel="top-1 accuracy (%)", title="Synthetic benchmark, RGB stream")
    lines += ["", f"figure: {figure}"]
    write_report(setting, "key_fraction", "\n".join(lines))


if __name__ == "__main__":
    main()
