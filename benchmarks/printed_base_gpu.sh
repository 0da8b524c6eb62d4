#!/usr/bin/env bash
# Issue 14 on one lent GPU machine: configs/printed-base.yaml from scratch, on a clock.
#   benchmarks/printed_base_gpu.sh PACK OUT_DIR [INIT]
# PACK is printed-base's data made here (`make base-data`) and packed by
# benchmarks/pack_for_device.py (that machine has no TeX); it unpacks into data/base.
# INIT, a printed-base-cpu checkpoint exported here (`texlens export ... --half`), adds a
# second arm on the same GPU: configs/printed-base-cpu.yaml continued from it at the GPU's
# batch size and clock; the two arms share the loader processes' cores.
# Extra `texlens train` options for both arms go in TRAIN_ARGS (a smoke run on a CPU:
# TRAIN_ARGS="--set train.max_time_min=0.3 --set train.precision=32-true ...").
# OUT_DIR receives each arm's best and last weights as inference checkpoints (a next run
# starts from ARM-last.pt with train.init_from) and the logs: a device call brings back
# 64 MiB at most, and the training checkpoints (45 MB with AdamW's moments) did not fit
# beside them (the first run lost its last weights that way).
set -euo pipefail
PACK=${1:?pack file}
OUT_DIR=${2:?output folder}
INIT=${3:-}
TEXLENS=${TEXLENS:-texlens}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT_DIR/logs"
step() { local s=$SECONDS; "$@"; echo "[$((SECONDS - s)) s] $*"; }
yaml_get() {  # FILE SECTION KEY: a config value, a list as words
  python3 -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]]
print(" ".join(map(str, v)) if isinstance(v, list) else v)' "$@"
}

# One arm: train CONFIG into RUN, then bring back its best and last weights and its logs.
train_arm() {
  local name=$1 config=$2 run=$3; shift 3
  # shellcheck disable=SC2086
  step $TEXLENS train "$config" --set "train.out_dir=$run" "$@" ${TRAIN_ARGS:-} \
    > "$OUT_DIR/logs/train-$name.log" 2>&1 || { tail -40 "$OUT_DIR/logs/train-$name.log"; return 1; }
  grep -h "validation at\|exported\|Trainable params\|train: \|stopped" \
    "$OUT_DIR/logs/train-$name.log" | sed "s/^/$name: /" || true
  cp "$run/model.pt" "$OUT_DIR/$name-best.pt"
  # The last checkpoint of a run from scratch records no training formulas; its data does.
  local data
  data=$(yaml_get "$config" data train)
  # shellcheck disable=SC2046
  step $TEXLENS export "$run/checkpoints/last.ckpt" --out "$OUT_DIR/$name-last.pt" \
    $(printf -- '--train-data %s ' $data)
  cp "$run"/logs/version_0/metrics.csv "$OUT_DIR/logs/$name-metrics.csv" 2>/dev/null || true
  cp "$run"/fit-profile.txt "$OUT_DIR/logs/$name-profile.txt" 2>/dev/null || true
}

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

if [ -z "$INIT" ]; then
  train_arm base configs/printed-base.yaml runs/printed-base
else
  workers=$(( $(yaml_get configs/printed-base.yaml data num_workers) / 2 ))
  clock=$(yaml_get configs/printed-base.yaml train max_time_min)
  train_arm base configs/printed-base.yaml runs/printed-base \
    --set "data.num_workers=$workers" &
  a=$!
  # printed-base-cpu's recipe at the GPU's batch, precision and clock; its learning rate,
  # from weights already trained, as on the CPU.
  train_arm cpu configs/printed-base-cpu.yaml runs/printed-base-cpu-gpu \
    --set "train.init_from=$INIT" --set data.batch_size=128 \
    --set "data.num_workers=$workers" --set data.pad_multiple=64 \
    --set train.precision=bf16-mixed --set train.max_steps=100000 \
    --set "train.max_time_min=$clock" --set train.warmup=0.05 \
    --set train.val_every_steps=2000 --set train.keep_checkpoints=0 \
    --set train.profiler=simple --set train.threads=2 &
  b=$!
  status=0
  wait $a || status=1
  wait $b || status=1
fi
[ -z "${smi:-}" ] || kill "$smi" || true
tar -C "$OUT_DIR" -czf "$OUT_DIR/logs.tar.gz" logs && rm -r "$OUT_DIR/logs"
ls -la "$OUT_DIR"
exit "${status:-0}"
