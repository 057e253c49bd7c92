#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in one call of a few minutes (a session with a
# lent GPU runs this once; every figure goes into BENCHMARKS.md with the device named).
# Needs torch with CUDA and the package importable (PYTHONPATH=.); no PyAV, no OpenCV.
#   issue 4: TV-L1 pairs/s at 340x256 (goal >= 1,000 on an H100)
#   issue 5: train step, B = 32, N = 10, resnet34, bf16, channels_last; DATP overhead (goal <= 1 %)
#   issue 2: pooling forward + backward on the GPU
# Not here: the real-loader half of issue 5 (benchmarks/train_step.py --loader DATA) needs PyAV
# and a dataset on the device; carry the av wheel and a `datp synth` folder for it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== flow throughput (issue 4)"
timeout 180 "$PY" benchmarks/flow_throughput.py --device cuda --batch-sizes 32,64,128 --pairs 512
echo "== train step, compute-bound (issue 5)"
timeout 180 "$PY" benchmarks/train_step.py --device cuda --repeats 20
echo "== train step with torch.compile (issue 5)"
timeout 240 "$PY" benchmarks/train_step.py --device cuda --repeats 20 --compile
echo "== pooling forward + backward (issue 2)"
timeout 60 "$PY" benchmarks/pooling.py --device cuda
