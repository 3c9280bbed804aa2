#!/usr/bin/env bash
# The CUDA benchmarks in one run, for a GPU machine without network access (the `device` tool).
# Optuna and its pure-Python dependencies come from wheels in .whl/ (pip download on a machine with network);
# torch, numpy, scikit-learn, rich, pyyaml and networkx are expected installed. Results go to $OUT (default
# benchmarks/results), one step's failure does not stop the next.
#
#   OUT=/tmp/out bash benchmarks/device_run.sh
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if [ -d .whl ]; then
    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
step() {  # step SECONDS NAME COMMAND...
    local limit=$1 name=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - started)) s"
    tail -n 4 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"

step 100 operators python benchmarks/bench_operators.py --device cuda --rounds 7 --budget 3 --out "$OUT/operators_cuda.json"
step 60 dcls python benchmarks/bench_dcls.py --device cuda --min-run-time 0.5 --rounds 3 --output "$OUT/dcls_cuda.json"
step 300 dcls_compiled python benchmarks/bench_dcls.py --device cuda --compile --settings depthwise_train dense_train_b8 --min-run-time 0.5 --rounds 3 --output "$OUT/dcls_cuda_compiled.json"
step 80 trial python benchmarks/bench_trial.py --device cuda --trials 6 --out "$OUT/trial_cuda.json"
step 120 gpu_share python benchmarks/bench_gpu_share.py --trials 8 --out "$OUT/gpu_share_cuda.json"
step 30 latency python -m nas inspect resnet:ResNet-50 --latency --device cuda --batch-size 32 --dtype bfloat16 --channels-last --json
step 90 search python -m nas search --space convops.yaml --set train.device=cuda --study-dir /tmp/study_cuda --no-plots
ls -la "$OUT"
