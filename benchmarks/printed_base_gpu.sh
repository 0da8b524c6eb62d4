#!/usr/bin/env bash
# Issue 14 on one lent GPU machine: configs/printed-base.yaml from scratch, on a clock.
#   benchmarks/printed_base_gpu.sh PACK OUT_DIR
# PACK is printed-base's data made here (`make base-data`) and packed by
# benchmarks/pack_for_device.py (that machine has no TeX); it unpacks into data/base.
# Extra `texlens train` options go in TRAIN_ARGS (a smoke run on a CPU:
# TRAIN_ARGS="--set train.max_time_min=0.3 --set train.precision=32-true ...").
# OUT_DIR receives the best and the last weights as inference checkpoints (a next run
# starts from model-last.pt with train.init_from) and the logs: a device call brings back
# 64 MiB at most, and the training checkpoint (45 MB with AdamW's moments) did not fit
# beside them (the first run lost model-last.pt that way).
set -euo pipefail
PACK=${1:?pack file}
OUT_DIR=${2:?output folder}
TEXLENS=${TEXLENS:-texlens}
PYTHON=${PYTHON:-python3}
RUN=${RUN:-runs/printed-base}
mkdir -p "$OUT_DIR/logs"
step() { local s=$SECONDS; "$@"; echo "[$((SECONDS - s)) s] $*"; }

[ -f data/base/train-corpus/caption.txt ] || step python3 -m tarfile -e "$PACK" .
# Loader processes hand batches over in shared memory: a small /dev/shm (a container's
# default is 64 MB) ends a run with a bus error, so the log says how much there is.
df -h /dev/shm 2>/dev/null | tail -1 || true
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 \
    > "$OUT_DIR/logs/gpu.csv" 2>&1 &
  smi=$!
fi
# What a new input shape costs a step on this GPU (the first run was idle at 1.2 steps/s).
timeout 60 "$PYTHON" benchmarks/shape_cost.py configs/printed-base.yaml \
  > "$OUT_DIR/logs/shape_cost.log" 2>&1 || true
cat "$OUT_DIR/logs/shape_cost.log"
# shellcheck disable=SC2086
step $TEXLENS train configs/printed-base.yaml --set "train.out_dir=$RUN" ${TRAIN_ARGS:-} \
  > "$OUT_DIR/logs/train.log" 2>&1 || { tail -40 "$OUT_DIR/logs/train.log"; exit 1; }
grep -h "validation at\|exported\|Trainable params\|train: \|stopped" "$OUT_DIR/logs/train.log" || true
cp "$RUN/model.pt" "$OUT_DIR/model-best.pt"
# The last checkpoint holds no record of its training formulas; the run's data gives it.
train_data=$(python3 -c "import yaml; print(' '.join('--train-data ' + d for d in \
  yaml.safe_load(open('configs/printed-base.yaml'))['data']['train']))")
# shellcheck disable=SC2086
step $TEXLENS export "$RUN/checkpoints/last.ckpt" --out "$OUT_DIR/model-last.pt" $train_data
cp "$RUN"/logs/version_0/metrics.csv "$RUN"/fit-profile.txt "$OUT_DIR/logs/" 2>/dev/null || true
[ -z "${smi:-}" ] || kill "$smi" || true
tar -C "$OUT_DIR" -czf "$OUT_DIR/logs.tar.gz" logs && rm -r "$OUT_DIR/logs"
ls -la "$OUT_DIR"
