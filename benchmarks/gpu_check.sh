#!/usr/bin/env bash
# GPU checks of the component engine (issue 20), for one lent GPU, in under 8 minutes, every step
# time-limited and allowed to fail, everything written under $OUT (default ./gpu_check_out).
#
# On the lent machine (its Python has torch and Triton but no detectron2: ../shared/device/env.sh
# installs the rest, see ../shared/device/README.md), from the repository root:
#
#   bash .device/env.sh bash benchmarks/gpu_check.sh
#
# Steps (seconds allowed):
#   env.txt           nvidia-smi, versions                                                    (30)
#   cuda_tests.txt    the engine's tests on CUDA: Triton labelling vs OpenCV, Triton path vs
#                     the torch path on the same GPU (benchmark inputs, ties, worst cases, half
#                     precision), op counts, host syncs under set_sync_debug_mode("error"),
#                     pinned outputs with every backend                                      (150)
#   refine.txt        bench_refine.py refine + worst: refinement alone at batch 4 / 16, 416²,
#                     backends opencv / torch / triton, kernel launches per call; 1-px spiral and
#                     tiny components at batch 4                                              (70)
#   step.txt          bench_refine.py step: R50 and HRNet-W48 at batch 4 / 16, float32, refinement
#                     off / on, its share of the step                                         (80)
#   step_amp.txt      the same at batch 16 under fp16 and bf16 autocast (AMPTrainer's way),
#                     losses finite                                                           (60)
#   decode.txt        bench_decode.py: decoding per 416² / 512² image, triton and torch backends,
#                     and the network alone per image (R50, HRNet-W48)                        (50)
#   profile.txt       profile_refine.py: top-20 device kernels of one refinement call at batch
#                     16, 416², triton and torch backends                                     (40)
#   summary.txt       the result lines of all of the above
#
# GPU_CHECK_DEVICE=cpu runs the same steps small on the CPU (a smoke test of this script).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEV="${GPU_CHECK_DEVICE:-cuda}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DEV" = cuda ]; then
  SIZE=416; BATCHES="4 16"; BIG=16; RUNS=4; STEPS=2; DSIZES="416 512"; MODELS="R50 HRNet48"; TESTS_K=""
  DECODE_BACKEND=triton
else  # smoke run on the CPU: tiny sizes, one model, the interpreted Triton tests skipped (they run in CI)
  SIZE=64; BATCHES="2"; BIG=2; RUNS=1; STEPS=1; DSIZES="64"; MODELS="R50"; TESTS_K="-k not_a_test_name"
  DECODE_BACKEND=auto
fi
t0=$(date +%s)
step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt
  local name=$1 limit=$2; shift 2
  local s; s=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "[gpu_check] $name: exit $rc after $(( $(date +%s) - s )) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

step env 30 bash -c "nvidia-smi; $PY -c 'import sys, torch, triton; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"\"); print(\"triton\", triton.__version__)'; $PY -c 'import bestie_d2, detectron2; print(\"detectron2\", detectron2.__version__, detectron2.__file__)'"

# shellcheck disable=SC2086
step cuda_tests 150 "$PY" -m pytest -q -x -p no:cacheprovider -rs $TESTS_K \
  tests/test_triton_labelling.py tests/test_triton_engine.py tests/test_engine_op_counts.py \
  tests/test_refine_syncs.py tests/test_pinned_outputs.py tests/test_connected_components.py

# shellcheck disable=SC2086
step refine 70 "$PY" benchmarks/bench_refine.py --devices "$DEV" --parts refine worst --batches $BATCHES \
  --size "$SIZE" --runs "$RUNS" --backends opencv torch triton

# shellcheck disable=SC2086
step step 80 "$PY" benchmarks/bench_refine.py --devices "$DEV" --parts step --models $MODELS --batches $BATCHES \
  --size "$SIZE" --steps "$STEPS" --amp off

# shellcheck disable=SC2086
step step_amp 60 "$PY" benchmarks/bench_refine.py --devices "$DEV" --parts step --models $MODELS --batches "$BIG" \
  --size "$SIZE" --steps "$STEPS" --amp fp16 bf16

# shellcheck disable=SC2086
step decode 50 bash -c "$PY benchmarks/bench_decode.py --device $DEV --sizes $DSIZES --runs 20 --ref-runs 0 \
  --backend $DECODE_BACKEND --network $MODELS; $PY benchmarks/bench_decode.py --device $DEV --sizes $DSIZES --runs 10 \
  --ref-runs 0 --backend torch"

step profile 40 "$PY" benchmarks/profile_refine.py --device "$DEV" --batch "$BIG" --size "$SIZE" --calls 5 \
  --backends triton torch --top 20

{
  echo "gpu_check on $DEV, $(( $(date +%s) - t0 )) s in all"
  cat "$OUT/steps.txt"
  grep -h -E "^(torch|triton|detectron2|NVIDIA|\| +[0-9]+ +NVIDIA)" "$OUT/env.txt" 2>/dev/null
  grep -h -E "passed|failed|error" "$OUT/cuda_tests.txt" | tail -n 3
  grep -h -E "^(refine|worst|step) " "$OUT/refine.txt" "$OUT/step.txt" "$OUT/step_amp.txt" 2>/dev/null | sort -u
  grep -h -E "fast|network" "$OUT/decode.txt" 2>/dev/null
  grep -h -E "^=== backend" "$OUT/profile.txt" 2>/dev/null
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit 0
