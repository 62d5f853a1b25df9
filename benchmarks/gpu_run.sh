#!/usr/bin/env bash
# The one GPU run of issue 14: the yardstick's floor beside every fast-fitness design of afos, timed side
# by side on the same candidates and seeds, in under 9 minutes. Run from the repository root on the device
# machine, with .device/ filled by benchmarks/gpu_prepare.sh and carried (device README: carry, $OUT):
#   run(command="bash benchmarks/gpu_run.sh", carry=[".device"], timeout_s=590)
# Writes into $OUT (at most 8 files come back): env.txt, yardstick.log, throughput.log, throughput.json.
# GPU_RUN_SMOKE=1: the same pipeline on a CPU in a few minutes (digits, population 4, small caps).
# GPU_RUN_DESIGNS / GPU_RUN_SCALING: other designs (a second call for what the budget cut).
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1
if ls .device/wheels/*.whl >/dev/null 2>&1 && ! python3 -c "import deap, tomli_w" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
designs=${GPU_RUN_DESIGNS:-floor,sequential,batched,pallas,pipelined,batched@bfloat16,batched@highest,unrolled,cache}
scaling=${GPU_RUN_SCALING:-pallas,batched,floor}
if [ "${GPU_RUN_SMOKE:-0}" = 1 ]; then
    yard=(timeout 300 python3 .device/yardstick/fitness_yardstick.py .device/fashion-mnist 2 512 vmap_relu)
    export TEST_N=500
    bench=(--dataset digits --population 4 --batch-size 32 --train-size 256 --val-size 128 --cache-population 2
           --scaling-populations 2 --budget 1500 --design-timeout 400)
    bench_timeout=1600
else
    yard=(timeout 100 python3 .device/yardstick/fitness_yardstick.py .device/fashion-mnist 32 60000 vmap_relu)
    bench=(--dataset fashion_mnist --data-dir .device/fashion-mnist --batch-size 128 --population 32
           --sequential-generations 1 --cache-population 8 --scaling-populations 8,128 --budget 390
           --design-timeout 150)
    bench_timeout=410
fi
{ date; nvidia-smi 2>&1 | head -15; python3 -c "import jax, flax, optax; print(jax.__version__, flax.__version__,
  optax.__version__, jax.devices())"; git log --oneline -1 2>/dev/null; } >"$OUT/env.txt" 2>&1
"${yard[@]}" 2>&1 | tee "$OUT/yardstick.log"
echo "yardstick exit status ${PIPESTATUS[0]}" | tee -a "$OUT/yardstick.log"
timeout "$bench_timeout" python3 benchmarks/fitness_throughput.py "${bench[@]}" --designs "$designs" \
    --scaling "$scaling" --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"
echo "throughput exit status ${PIPESTATUS[0]}" | tee -a "$OUT/throughput.log"
