#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in one call of at most BUDGET seconds (560 by
# default, under the device's 600 s per call; a session with a lent GPU runs this once, with
# timeout_s 600, and every figure goes into BENCHMARKS.md with the device named).
# Needs torch with CUDA and the package importable (PYTHONPATH=.); no PyAV, no OpenCV.
#   issues 4, 13: TV-L1 pairs/s at 340x256, batches 16..256, eager and compiled (goal >= 1,000
#     on an H100/H200), kernels and host syncs per inner iteration; then the loop before issue 13
#     (needs no zstandard, PyAV or OpenCV)
#   issue 5: train step, B = 32, N = 10, resnet34, bf16, channels_last; DATP overhead (goal <= 1 %)
#   issue 2: pooling forward + backward on the GPU
#   issue 17: the loader on JPEG frame and flow folders, decoded in 1, 8, 15 workers vs on the GPU
#     (data.decode), clips/s ready on the GPU; GPU JPEG decode images/s in batches of 320
# The real-loader half of issue 5 runs when LOADER_DATA names a dataset and PyAV imports. The
# device image has no PyAV: prepare here, once (about 60 MB, under the 64 MiB carry limit),
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl av==18.1.0
#   datp synth runs/gpu_loader --classes 10 --videos-per-class 10 --clips-per-group 2 \
#       --size 340x256 --frames 48
# and run with carry [".whl", "runs/gpu_loader"] and the command
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site LOADER_DATA=runs/gpu_loader bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# One device call may run 600 s at most: every step gets its own limit and never more than what
# is left of BUDGET (the most important first), and a step with under 20 s left is skipped.
BUDGET=${BUDGET:-560}
START=$SECONDS
step() {
    local limit=$1 title=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    echo "== $title"
    if [ "$left" -lt 20 ]; then
        echo "skipped: ${left} s left of the ${BUDGET} s budget"
        return
    fi
    timeout $((limit < left ? limit : left)) "$@" || echo "(ended with status $?)"
}
step 100 "flow throughput, eager (issues 4, 13)" \
    "$PY" benchmarks/flow_throughput.py --device cuda --modes eager \
    --batch-sizes 16,32,64,128,256 --pairs 256
step 180 "flow throughput, compiled: the first call compiles (issue 13)" \
    "$PY" benchmarks/flow_throughput.py --device cuda --modes compiled \
    --batch-sizes 16,32,64,128,256 --pairs 512
step 90 "train step, compute-bound (issue 5)" \
    "$PY" benchmarks/train_step.py --device cuda --repeats 20
step 30 "pooling forward + backward (issue 2)" "$PY" benchmarks/pooling.py --device cuda
step 40 "flow throughput, the loop before issue 13 (compacting, a host sync per iteration)" \
    "$PY" benchmarks/flow_throughput.py --device cuda --modes before --batch-sizes 64,256 \
    --pairs 256
step 150 "train step with torch.compile (issue 5)" \
    "$PY" benchmarks/train_step.py --device cuda --repeats 20 --compile
step 150 "loader: JPEG folders decoded in the workers vs on the GPU (issue 17)" \
    "$PY" benchmarks/loading.py --device cuda --workers 1,8,15 --batch-size 32 --seconds 3 \
    --videos 96 --video-frames 60
if [ -n "${LOADER_DATA:-}" ] && "$PY" -c "import av" 2>/dev/null; then
    step 120 "train step through the real loader (issue 5)" \
        "$PY" benchmarks/train_step.py --device cuda --repeats 20 --loader "$LOADER_DATA" \
        --workers "${LOADER_WORKERS:-12}"
else
    echo "== train step through the real loader (issue 5)"
    echo "skipped: set LOADER_DATA to a dataset in UCF101 layout and make PyAV importable"
fi
echo "== done in $((SECONDS - START)) s"
