#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in one device call of at most 400 s, and what to
# run after it. A session with a lent GPU runs first, with timeout_s 430:
#     bash benchmarks/gpu_checks.sh
# and, at once (the machine stays warm 30 s), if its summary names steps without figures, the
# short second command it prints, with timeout_s 230, for example
#     bash benchmarks/gpu_checks.sh --budget 200 --only train_step_compiled:200
# then gives the machine back. Both fit one 15-minute lease with a fresh machine's start:
# `python3 benchmarks/gpu_plan.py plan` prints the steps, their limits and that arithmetic.
#
# The plan is a table in benchmarks/gpu_plan.py (tests/test_gpu_checks.py runs it with a fake
# device), most important first: the compiled train step with average and DATP pooling, the
# CUDA decode race (old call against datp's), the step fed by the real loader, host waits per
# step, TV-L1 compiled on mixed motion, datp flow end to end, ViT-B/16 feature extraction (issue
# 26) and datp predict on 1080p video (issue 27). Each step prints a
# `FIGURE name value unit` line per figure the moment it is measured and is killed at its own
# limit, so one failure or time-out loses only itself; everything printed also goes to
# $OUT/gpu_checks.log when $OUT is set, the figures to $OUT/gpu_figures.jsonl, and the summary
# of every goal figure (measured, failed with its reason, or skipped) ends the output and
# $OUT/gpu_summary.md. Needs torch with CUDA; the device image has no PyAV, no OpenCV contrib
# and no zstandard. Only the last step needs one (PyAV, to write and read its video); it is
# skipped, saying so, unless its wheel travels: once, here,
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 -d .whl av==18.1.0
# (36 MB) and the device call names `.whl` in carry; this script installs what .whl holds.
# Put every figure into BENCHMARKS.md with the device.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/datp-wheels .whl/*.whl && export PYTHONPATH="/tmp/datp-wheels:${PYTHONPATH:-}"
fi
exec "${PY:-python3}" benchmarks/gpu_plan.py run "$@"
