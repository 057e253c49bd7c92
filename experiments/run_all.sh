#!/usr/bin/env bash
# Every experiment of docs/RESULTS.md, in an order that trains each shared network once.
# Arguments are passed to every script, e.g. --seeds 3 --out runs/experiments --set train.device=cuda
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for script in table1_inputs table3_generators table4_test_schemes figures pool_space table5_streams; do
    "$PY" "experiments/$script.py" "$@"
done
"$PY" experiments/key_fraction.py "$@"
"$PY" experiments/decoy_predictions.py "$@"
# Beyond the paper: heads on the frozen features of the Table 1 networks, then weak localization
# on untrimmed videos (its own benchmark).
"$PY" experiments/features_heads.py "$@"
"$PY" experiments/localization.py "$@"
