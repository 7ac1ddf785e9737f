#!/usr/bin/env bash
# VideoMDM variants side by side on one GPU machine: the demo's data rebuilt (deterministic), a teacher folder
# unpacked, an evaluator trained there, then every variant trained, `eval lift` and `eval t2m` run in parallel.
# One summary line per variant (PA-MPJPE, FID ± 95% over repeats, R-precision top-3, Diversity) in OUT/summary.txt.
#
#   tar czf .sweep/teacher.tgz -C demo/synth2d teacher        # here, after `make demo` and the teacher
#   OUT=/tmp/out bash experiments/videomdm/sweep.sh plain-mdm="--mode plain-mdm" videomdm="" lv10="--lambda-vel 10"
#
# Each NAME=FLAGS trains `fastmotion train mdm --config small --steps $STEPS FLAGS` (seeded: add --seed N for
# replicates). Figures are comparable within one sweep only: the evaluator is retrained and the device's numerics
# (bf16 autocast) differ from the CPU runs of `make videomdm`.
# Environment: OUT (required), TEACHER_TGZ (.sweep/teacher.tgz), STEPS (1500), REPEATS (3), EVSTEPS (600),
# DEVICE (cuda), PYBIN (python3), WORK (/tmp/videomdm_sweep).
set -u
: "${OUT:?set OUT to the folder for summary.txt and logs.txt}"
FM="${PYBIN:-python3} -m fastmotion.cli"
D=${WORK:-/tmp/videomdm_sweep}
DEV=${DEVICE:-cuda}
mkdir -p "$D/runs" "$OUT"
( $FM data synth --out "$D/synth" --num 2000 --seed 0 \
  && $FM data render --from "$D/synth" --out "$D/synth2d" --views 1 --seed 0 \
  && tar xzf "${TEACHER_TGZ:-.sweep/teacher.tgz}" -C "$D/synth2d" ) > "$D/data.log" 2>&1 || { tail "$D/data.log"; exit 1; }
echo "data ready $(date +%T)"
$FM train evaluator --data "$D/synth2d" --out "$D/evaluator" --config small --steps "${EVSTEPS:-600}" \
  --device "$DEV" > "$D/evaluator.log" 2>&1 &
EVALUATOR=$!

summarise() {  # NAME FLAGS TRAIN_SECONDS
  ${PYBIN:-python3} - "$D/runs/$1" "$1" "$2" "$3" <<'PY'
import json, sys
run, name, flags, secs = sys.argv[1:]
try:
    lift = json.load(open(run + ".lift.json"))["model"]
    m = json.load(open(run + ".t2m.json"))["metrics"]["model"]
    print(f"{name:14s} PA-MPJPE {lift['PA-MPJPE']:.1f} FID {m['FID'][0]:.3f}+-{m['FID'][1]:.3f} "
          f"R@3 {m['R-precision top-3'][0]:.3f} Div {m['Diversity'][0]:.3f} train {secs}s [{flags}]")
except (OSError, KeyError, ValueError) as err:
    print(f"{name} [{flags}] evaluation FAILED: {err!r}")
PY
}

variant() {  # NAME FLAGS...
  local name=$1; shift
  local run="$D/runs/$name" t0; t0=$(date +%s)
  if ! OMP_NUM_THREADS=1 $FM train mdm --data "$D/synth2d" --out "$run" --config small --steps "${STEPS:-1500}" \
      --device "$DEV" --ckpt-every 5000 "$@" > "$run.train.log" 2>&1; then
    echo "$name training FAILED: $(tail -3 "$run.train.log")" >> "$OUT/summary.txt"; return
  fi
  local seconds=$(( $(date +%s) - t0 ))
  OMP_NUM_THREADS=1 $FM eval lift --model mdm --checkpoint "$run/last.pt" --data "$D/synth2d" --split test \
    --device "$DEV" --json "$run.lift.json" > "$run.lift.log" 2>&1
  while kill -0 "$EVALUATOR" 2>/dev/null; do sleep 2; done
  OMP_NUM_THREADS=1 $FM eval t2m --model mdm --checkpoint "$run/last.pt" --evaluator "$D/evaluator/last.pt" \
    --data "$D/synth2d" --split test --repeats "${REPEATS:-3}" --mm-prompts 0 --no-baselines --device "$DEV" \
    --json "$run.t2m.json" > "$run.t2m.log" 2>&1
  summarise "$name" "$*" "$seconds" >> "$OUT/summary.txt"
  grep -h '"eval/' "$run/log.jsonl" | sed "s/^/$name /" >> "$OUT/logs.txt"
}

for spec in "$@"; do
  # FLAGS split on spaces on purpose: NAME="--lambda-vel 10 --seed 1"
  # shellcheck disable=SC2086
  variant "${spec%%=*}" ${spec#*=} &
done
wait
echo "sweep done $(date +%T)"
