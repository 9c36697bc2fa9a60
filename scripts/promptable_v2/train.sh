#!/usr/bin/env bash
# Promptable model v2 (issue 16): the exact recipe. Checkpoints live outside the repository
# (OUT, default ../runs/promptable-v2 beside the checkout); rerunning this script resumes
# from the last checkpoint after any interruption. The data list (data.json) names every
# training image; Ti frames 896 and 974 and creme 10-12 are held out for validation.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$here/../../../runs/promptable-v2}"
resume=()
[ -f "$OUT/checkpoint.pt" ] && resume=(--resume)
exec microseg train-promptable --out "$OUT" --data-list "$here/data.json" \
  --init default --synthetic 300 --synth-size 320 --real-fraction 0.6 \
  --minutes "${MINUTES:-150}" --epochs 400 --steps-per-epoch 100 --batch-size 32 --lr 1e-3 \
  --threads "${THREADS:-1}" --seed 2 \
  --val "$here/../../../shared/data/creme-316L-loops" --val-images 10 11 12 \
  "${resume[@]}"
