#!/usr/bin/env bash
# Issue 10: why does Winograd-ReLU's dense model under-fit the paper recipe? Dense-only Winograd-ReLU runs of
# one network, side by side, each the paper recipe (traces/recipes/cifar10.sh, RECIPE=paper) with the flags of
# one GRID entry changed (the recipe's flags come from cifar10.sh's `flags` stage). Resumable: run the same command again and every unfinished run resumes.
#
#   GRID="lr0.1:--lr 0.1" EPOCHS=16 THREADS=2 PREFIX=wr_cpu bash traces/recipes/wr_grid.sh vgg_nagadomi  # CPU
#   JOB=wr_grid bash traces/recipes/device/paper_gpu.sh     # on a lent GPU: the five default entries, 30 epochs
#
# Env: DATA (../shared/data/cifar10), RUNS (runs), PYTHON (python), THREADS (per run, 1), EPOCHS (dense epochs,
# 30), GRID ("name:flags;..."; default below), PREFIX (run folders RUNS/PREFIX_NETWORK_name; wr_grid),
# LIMIT_S (stop every run after this many seconds; resumable; none by default).
set -euo pipefail
network=${1:?usage: wr_grid.sh vgg_nagadomi|resnet18}
DATA=${DATA:-../shared/data/cifar10}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-30}
PREFIX=${PREFIX:-wr_grid}
GRID=${GRID:-"lr0.1:--lr 0.1;lr0.2:--lr 0.2;wd1e-4:--weight-decay 1e-4;fp32:--precision fp32;e45:--epochs 45"}
limit=()
[ -n "${LIMIT_S:-}" ] && limit=(timeout "$LIMIT_S")

here=$(dirname "${BASH_SOURCE[0]}")
common="$(RECIPE=paper DENSE_EPOCHS=$EPOCHS DATA=$DATA bash "$here/cifar10.sh" "$network" flags) --method winograd_relu"
IFS=';' read -ra entries <<<"$GRID"
pids=()
for entry in "${entries[@]}"; do
    name=${entry%%:*} flags=${entry#*:} out=$RUNS/${PREFIX}_${network}_$name
    mkdir -p "$out"
    if [ -f "$out/last.pt" ]; then
        args=(--out "$out" --resume)
    else
        # shellcheck disable=SC2206  # flags are words on purpose: later flags override the common ones
        args=($common $flags --out "$out" --checkpoint-every-s 180)
    fi
    "${limit[@]}" $PYTHON -m winosim train "${args[@]}" --threads "$THREADS" --no-progress >>"$out/log.txt" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?  # 124: stopped by LIMIT_S, resumable
done
exit "$status"
