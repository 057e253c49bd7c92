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
# step, TV-L1 compiled on mixed motion, datp flow end to end, and two slots kept for issues 26
# (feature extraction) and 27 (a 60-minute video) until their scripts exist. Each step prints a
# `FIGURE name value unit` line per figure the moment it is measured and is killed at its own
# limit, so one failure or time-out loses only itself; everything printed also goes to
# $OUT/gpu_checks.log when $OUT is set, the figures to $OUT/gpu_figures.jsonl, and the summary
# of every goal figure (measured, failed with its reason, or skipped) ends the output and
# $OUT/gpu_summary.md. Needs torch with CUDA; the device image has no PyAV, no OpenCV contrib
# and no zstandard, and no step needs them. Put every figure into BENCHMARKS.md with the device.
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PY:-python3}" benchmarks/gpu_plan.py run "$@"
