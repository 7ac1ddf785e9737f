#!/usr/bin/env bash
# One diagnosis run of docs/real-data.md: a prior and an ML-RQ trained on DATA2D with extra options, scored on the
# val and test splits of EVAL2D (the 1-view render of `make real`), beside zero depth.
#   experiments/real_data/variant.sh OUT DATA2D EVAL2D "PRIOR_OPTIONS" "MLRQ_OPTIONS"
# PRIOR_OPTIONS "checkpoint:PATH" reuses a trained prior. E.g.
#   experiments/real_data/variant.sh runs/v4 runs/b2d_v4 real/real2d "" ""      # 4 views per clip
#   experiments/real_data/variant.sh runs/s5k real/real2d real/real2d checkpoint:real/prior/last.pt "--steps 5000"
set -euo pipefail
out=$1 data=$2 eval2d=$3 prior_opts=$4 mlrq_opts=$5
fm="${PYTHON:-.venv/bin/python} -m fastmotion.cli"
rm -rf "$out" && mkdir -p "$out"
if [[ "$prior_opts" == checkpoint:* ]]; then prior=${prior_opts#checkpoint:}; else  # an existing prior
  $fm train prior --data "$data" --out "$out/prior" --config small $prior_opts > "$out/prior.log" 2>&1
  prior=$out/prior/last.pt
fi
start=$(date +%s)
$fm train mlrq --data "$data" --prior "$prior" --out "$out/mlrq" --config small $mlrq_opts > "$out/mlrq.log" 2>&1
echo "ML-RQ training: $(( $(date +%s) - start )) s"
for split in val test; do
  $fm eval lift --checkpoint "$out/mlrq/last.pt" --data "$eval2d" --split $split --json "$out/eval-$split.json" \
    2>/dev/null | tail -3
done
