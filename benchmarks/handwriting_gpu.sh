#!/usr/bin/env bash
# Issue 16 on one GPU machine: the handwriting data, then configs/handwritten-base.yaml
# (a larger model from scratch) and configs/handwritten-stage6.yaml (handwritten-small
# trained on) side by side on the one GPU, each with its own loader processes.
#   benchmarks/handwriting_gpu.sh [CROHME_DIR] [OUT_DIR]
# CROHME_DIR defaults to ../shared/data/crohme (read in place, never copied); finished
# data steps are skipped. Extra `texlens train` options go in TRAIN_ARGS (e.g. a short
# smoke run: TRAIN_ARGS="--set train.max_steps=4"). Logs go to OUT_DIR (default
# outputs/handwriting-gpu); the models to runs/handwritten-base and runs/handwritten-stage6.
set -euo pipefail
CROHME=${1:-../shared/data/crohme}
LOGS=${2:-outputs/handwriting-gpu}
TEXLENS=${TEXLENS:-texlens}
W=$(nproc)
mkdir -p "$LOGS" data/hand
step() { local s=$SECONDS; "$@"; echo "[$((SECONDS - s)) s] $*"; }

[ -f data/crohme/train/caption.txt ] || step $TEXLENS data crohme --workers "$W" \
  --inkml "$CROHME/train_inkml.tar.gz" --captions "$CROHME/train_caption.txt" --copies 3 \
  --out data/crohme
[ -f data/crohme-warp/train/caption.txt ] || step $TEXLENS data crohme --workers "$W" \
  --inkml "$CROHME/train_inkml.tar.gz" --captions "$CROHME/train_caption.txt" --copies 6 \
  --warp 0.12 --out data/crohme-warp
[ -f data/hand/symbols.npz ] || step $TEXLENS data symbols \
  --inkml "$CROHME/train_inkml.tar.gz" --out data/hand/symbols.npz
grep -v -P '^\S+_aug\d+\t' data/crohme/train/caption.txt > data/hand/real-captions.txt
[ -f data/hand/synth-captions/caption.txt ] || step $TEXLENS data synth-hand --workers "$W" \
  --captions data/hand/real-captions.txt --n 24000 --seed 1 --out data/hand/synth-captions
[ -f data/hand/synth-random/caption.txt ] || step $TEXLENS data synth-hand --workers "$W" \
  --n 40000 --seed 2 --exclude data/crohme/val/caption.txt --exclude "$CROHME/2014/caption.txt" \
  --out data/hand/synth-random

# Both runs at once: alone, either leaves the GPU mostly idle (the loaders are the limit).
# shellcheck disable=SC2086
$TEXLENS train configs/handwritten-base.yaml ${TRAIN_ARGS:-} > "$LOGS/base.log" 2>&1 &
base=$!
# shellcheck disable=SC2086
$TEXLENS train configs/handwritten-stage6.yaml ${TRAIN_ARGS:-} > "$LOGS/stage6.log" 2>&1 &
stage6=$!
status=0
wait $base || { echo "handwritten-base failed:"; tail -30 "$LOGS/base.log"; status=1; }
wait $stage6 || { echo "handwritten-stage6 failed:"; tail -30 "$LOGS/stage6.log"; status=1; }
grep -h "validation at\|exported\|Trainable params\|train: " "$LOGS/base.log" "$LOGS/stage6.log" || true
for run in handwritten-base handwritten-stage6; do
  cp "runs/$run/logs/version_0/metrics.csv" "$LOGS/$run-metrics.csv" 2>/dev/null || true
done
exit $status
