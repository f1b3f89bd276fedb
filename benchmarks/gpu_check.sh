#!/usr/bin/env bash
# GPU checks of issue 15 (self-refinement on the device), for one lent GPU, in under 8 minutes.
# Not run yet (no device was lent when it was written): every step is independent, time-limited
# and allowed to fail; all output goes to $OUT (default ./gpu_check_out).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh          # PYTHON=... to pick the interpreter
#
# 1. the CUDA tests: labelling on CUDA == CPU, and the host-sync count under
#    torch.cuda.set_sync_debug_mode("error") (tests/test_refine_syncs.py::test_cuda_sync_debug_mode);
# 2. bench_refine.py on CUDA: refinement alone (batch 4, 16; opencv / torch labelling), the
#    worst cases, and training steps with / without refinement for R50 and HRNet-W48 at batch 4 and 16;
# 3. the bit-identity of decoding / refinement against the pre-refactor tree when it is there.
set -x
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi; "$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"; } \
  > "$OUT/env.txt" 2>&1 || true

timeout 150 "$PYTHON" -m pytest -q -rs tests/test_connected_components.py tests/test_refine_syncs.py \
  > "$OUT/cuda_tests.txt" 2>&1 || true

timeout 240 "$PYTHON" benchmarks/bench_refine.py --devices cuda --parts refine worst step \
  --models R50 HRNet48 --batches 4 16 --size 416 --runs 4 --steps 2 \
  > "$OUT/bench_refine_cuda.txt" 2>&1 || true

timeout 60 "$PYTHON" benchmarks/bench_refine.py --devices cuda --parts refine --batches 16 --runs 2 \
  --backends torch > "$OUT/bench_refine_cuda_repeat.txt" 2>&1 || true

if [ -d /work/before ]; then
  timeout 60 "$PYTHON" benchmarks/compare_outputs.py --backend torch > "$OUT/compare_outputs.txt" 2>&1 || true
fi
tail -n 30 "$OUT"/*.txt
exit 0
