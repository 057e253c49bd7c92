#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in one device call of at most BUDGET seconds
# (470 by default: 8 minutes with the machine's start-up margin). A session with a lent GPU runs
# it first, with timeout_s 600:
#     bash benchmarks/gpu_checks.sh
# and puts every figure into BENCHMARKS.md with the device named. Every script prints each figure
# the moment it is measured, so a step cut off by its limit still leaves what it measured.
# Needs torch with CUDA and the package importable (PYTHONPATH=.); the device image has no PyAV,
# no OpenCV and no zstandard, and none is needed (tests/test_gpu_checks.py imports every script
# below with those three hidden). Steps run most important first; each has its own limit, never
# more than what is left of BUDGET, and a step with under 20 s left is skipped.
#   issue 17: datp flow's code path end to end (decode, TV-L1, JPEG folders written), serial vs
#     pipelined, pairs/s (goal >= 600 on one H100) and host ms per pair outside TV-L1; on
#     generated videos, or on real frames when FLOW_FRAMES names a folder prepared where PyAV is
#     (about 15 MB):
#       python benchmarks/flow_pipeline.py --prepare runs/flow_frames --frames 150
#     carried with carry ["runs/flow_frames"] and FLOW_FRAMES=runs/flow_frames
#   issues 13, 17: TV-L1 pairs/s at 340x256, batches 16..256, eager and compiled (goal >= 1,000
#     on an H100/H200), on pairs with mixed motion (still, slow, fast in every batch), kernels and
#     host syncs per inner iteration
#   issues 5, 17: the real training step (datp.engine.train.training_step, what datp train runs),
#     B = 32, N = 10, resnet34, uint8 input normalized on the device, bf16 + channels_last, with
#     each pooling (DATP goal <= 1 % of the step), eager then compiled
#   issue 17: the loader on JPEG frame and flow folders, decoded in 1, 8, 15 workers vs on the GPU
#     (data.decode), clips/s ready on the GPU (goal >= 90 % of the compute-bound step's rate);
#     GPU JPEG decode images/s in batches of 320
#   issue 2, if time is left: pooling forward + backward
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# One inductor cache for every step: the flow block compiled once serves the later steps.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/datp_inductor}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    'torchvision', torchvision.__version__)"
BUDGET=${BUDGET:-470}
START=$SECONDS
step() {
    local limit=$1 title=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    echo "== $title (at $((SECONDS - START)) s)"
    if [ "$left" -lt 20 ]; then
        echo "skipped: ${left} s left of the ${BUDGET} s budget"
        return
    fi
    timeout $((limit < left ? limit : left)) "$@" || echo "(ended with status $?)"
}
step 60 "train step, eager: each pooling, bf16 + channels_last (issues 5, 17)" \
    "$PY" benchmarks/train_step.py --device cuda --repeats 20
step 70 "flow throughput, eager, mixed motion (issues 13, 17)" \
    "$PY" benchmarks/flow_throughput.py --device cuda --modes eager --motion mixed \
    --batch-sizes 16,32,64,128,256 --pairs 256
step 120 "flow throughput, compiled, mixed motion: the first call compiles (issues 13, 17)" \
    "$PY" benchmarks/flow_throughput.py --device cuda --modes compiled --motion mixed \
    --batch-sizes 16,64,256 --pairs 512
step 60 "datp flow end to end, serial vs pipelined (issue 17)" \
    "$PY" benchmarks/flow_pipeline.py --device cuda --videos 16 --frames 100 \
    ${FLOW_FRAMES:+--source "$FLOW_FRAMES"}
step 80 "loader: JPEG folders decoded in the workers vs on the GPU (issue 17)" \
    "$PY" benchmarks/loading.py --device cuda --workers 1,8,15 --batch-size 32 --seconds 3 \
    --videos 96 --video-frames 60
step 90 "train step, compiled: each pooling (issues 5, 17)" \
    "$PY" benchmarks/train_step.py --device cuda --repeats 20 --compile
step 30 "pooling forward + backward (issue 2)" "$PY" benchmarks/pooling.py --device cuda
echo "== done in $((SECONDS - START)) s"
