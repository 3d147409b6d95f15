#!/usr/bin/env bash
# Every GPU figure the course reports, in one run (about 4 minutes on one H100-class GPU):
#   1. the data on the device: one augmented training epoch of the tensor loader (images/s);
#   2. training-step time of LeNet, PackedLeNet(2, 4) and the fused deep ensemble of 4
#      (targets: PackedLeNet <= 1.5x LeNet, fused ensemble of 4 <= 2x LeNet);
#   3. the main job (LeNet, deep ensemble of 2, Packed-Ensemble, 3 epochs, tests), end to end and
#      its own fit + test time (target: <= 4 s of training and testing);
#   4. where its training time goes: each model's fit and test, cold and warm, against a plain
#      PyTorch loop over the same batches (benchmarks/loop_breakdown.py).
# Run from anywhere: bash benchmarks/gpu.sh  (needs the data: TUTORIAL_DATA_MIRROR or ./data)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
"$PY" - <<'PYCODE'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible: this script measures GPU figures only"
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYCODE
echo "== 1. data pipeline (data on the GPU)"
"$PY" benchmarks/data_pipeline.py --device cuda --workers 0 4
echo "== 2. training steps"
"$PY" benchmarks/models.py --device cuda --steps 50
echo "== 3. the main job, end to end"
"$PY" benchmarks/compare.py --accelerator gpu --runs 2
echo "== 4. where the training time goes"
(cd benchmarks && "$PY" loop_breakdown.py --accelerator gpu)
