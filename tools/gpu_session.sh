#!/usr/bin/env bash
# One device session, in the order of what matters most: build fastmotion._C with CUDA for Hopper, run the op tests
# (CUDA and Triton backends against the reference), the geometry benchmark, MVLift's stage-2 sweep on the GPU when
# gpu/ holds its inputs (gpu/stage1.pt, gpu/val2d: see experiments/mvlift/sweep_stage2.py), the MVLift stage-2
# benchmark and the ops' profile. Every step has its own time limit inside BUDGET seconds; logs and JSON in $OUT.
#   OUT=out BUDGET=560 bash tools/gpu_session.sh
set -uo pipefail
OUT=${OUT:-out}
BUDGET=${BUDGET:-560}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=16
PY=${PY:-python3}
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
step() {  # step NAME SECONDS COMMAND...: at most SECONDS, never past the budget
  local name=$1 limit=$2; shift 2
  local t=$(left); (( t < limit )) && limit=$t
  (( limit < 10 )) && { echo "== $name: skipped (budget spent)"; return; }
  echo "== $name (limit ${limit}s, $(( $(date +%s) - start ))s in)"
  timeout "$limit" "$@"; echo "== $name: rc $? after $(( $(date +%s) - start ))s"
}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null
} 2>&1 | tee "$OUT/session.log"
build() {
  FASTMOTION_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 $PY -m pip install -q --no-build-isolation --no-deps -e . && return
  echo "pip install -e failed; building in place"  # the package map of setup.py by links, the extension in place
  ln -sfn ../kernels fastmotion/kernels; ln -sfn ../train fastmotion/train; ln -sfn ../bench fastmotion/bench
  FASTMOTION_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 $PY setup.py -q build_ext --inplace
}
export -f build; export PY
step build 240 bash -c build > "$OUT/build.log" 2>&1; tail -3 "$OUT/build.log" | tee -a "$OUT/session.log"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import fastmotion._C as c; print('fastmotion._C with_cuda', c.with_cuda)" 2>&1 | tee -a "$OUT/session.log"
step tests 150 $PY -m pytest -q -p no:cacheprovider tests/test_ops_epipolar.py tests/test_ops_geometry.py \
  tests/test_ops_rvq.py tests/test_ops_validate.py tests/test_ops_autocast.py > "$OUT/tests.log" 2>&1
tail -5 "$OUT/tests.log" | tee -a "$OUT/session.log"
step geometry 100 $PY -m fastmotion.cli bench geometry --device cuda --json "$OUT/geometry.json" 2>&1 \
  | grep -v "^  " | tee -a "$OUT/session.log"
if [ -f gpu/stage1.pt ]; then
  step sweep 200 $PY experiments/mvlift/sweep_stage2.py --checkpoint gpu/stage1.pt --data gpu/val2d --limit 40 \
    --json "$OUT/sweep.json" ${SWEEP:---variant base} 2>&1 | grep -v "^lifting" | tee -a "$OUT/session.log"
fi
step lift 60 $PY -m fastmotion.cli bench lift --model mvlift --device cuda --json "$OUT/lift.json" 2>&1 \
  | grep -v "^  " | tee -a "$OUT/session.log"
step profile 60 $PY -m fastmotion.bench.profile_geometry > "$OUT/profile.txt" 2>&1
grep "^==" "$OUT/profile.txt" | tee -a "$OUT/session.log"
echo "done after $(( $(date +%s) - start ))s" | tee -a "$OUT/session.log"
