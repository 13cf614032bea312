#!/usr/bin/env bash
# The GPU measurement of RESULTS.md as one prepared script for a single-GPU machine:
# a 1-minute CUDA smoke test (stops early if the CUDA path breaks), the full SO400M run
# (ours in bf16 against the reference in fp32 and bf16), then ours in float32 on a tenth of
# the workload (agreement at 1e-4 on CUDA). Writes logs and JSON under ${OUT:-gpu-out}.
# Wheels in .whl/ (masc-metric, a transformers 5.x, krippendorff) are installed first when present.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
WORK=${WORK:-/tmp/masc-bench}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, transformers, masc; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'masc', masc.__version__, 'cpus', __import__('os').cpu_count())" | tee -a "$OUT/gpu.txt"
timeout 150 python3 benchmarks/throughput.py --preset cpu --device cuda --concepts 1 --prompts 2 --methods 3 \
  --reference-bf16 --warmup 2 --json "$OUT/smoke.json" 2>&1 | tee "$OUT/smoke.log" || { echo "SMOKE FAILED"; exit 2; }
timeout ${FULL_TIMEOUT:-400} python3 benchmarks/throughput.py --preset gpu-so400m --reference-bf16 --workdir "$WORK" \
  --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
echo "full run exit $?"
timeout ${FP32_TIMEOUT:-120} python3 benchmarks/throughput.py --preset gpu-so400m --dtype float32 --scale 0.1 \
  --reference-samples 60 --encoder-images 128 --warmup 16 --workdir "$WORK" --json "$OUT/gpu-fp32.json" 2>&1 | tee "$OUT/gpu-fp32.log"
echo "fp32 run exit $?"
