#!/usr/bin/env bash
# Issue 10: short dense-only runs of one network and one method, side by side, each the paper recipe's dense
# phase (its flags from cifar10.sh's `flags` stage, one home) with the flags of one GRID entry after them (a
# later flag wins): what each choice of the recipe is worth, and the search for a Winograd-ReLU recipe that
# does not under-fit. Resumable: run the same command again and every unfinished run resumes.
#
#   EPOCHS=8 THREADS=1 bash traces/recipes/grid.sh vgg_nagadomi             # the recipe's ablations, spatial
#   METHOD=winograd_relu GRID="lr0.1:--lr 0.1" EPOCHS=60 THREADS=2 PREFIX=wr_cpu_e60 \
#       bash traces/recipes/grid.sh vgg_nagadomi                            # one long Winograd-ReLU run
#   AT_ONCE=1 EPOCHS=8 THREADS=1 bash traces/recipes/grid.sh vgg_nagadomi   # one at a time, beside another run
#   JOB=ablate bash traces/recipes/device/paper_gpu.sh                      # on a lent GPU (also JOB=wr_grid)
#
# Env: METHOD (spatial or winograd_relu; native has no dense phase of its own: it converts the spatial model),
# DATA (../shared/data/cifar10), RUNS (runs), PYTHON (python), THREADS (per run, 1), EPOCHS (dense epochs,
# 30), GRID ("name:flags;..." where flags may be empty; the default depends on METHOD, below), PREFIX (run
# folders RUNS/PREFIX_NETWORK_name; default ablate for spatial, wr_grid for winograd_relu), LIMIT_S (stop every
# run after this many seconds; resumable; none by default), AT_ONCE (how many runs at a time, in GRID order, the
# next starting when one ends; default all of them).
set -euo pipefail
{ # one block, parsed whole before it runs: editing this file while it runs cannot change what it does
network=${1:?usage: grid.sh vgg_nagadomi|resnet18}
METHOD=${METHOD:-spatial}
DATA=${DATA:-../shared/data/cifar10}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-30}
case "$METHOD" in
    spatial)
        # each of the recipe's choices (docs/training.md) turned back, one at a time, against the recipe itself
        default_grid="base:;step:--schedule step --lr 0.1;no_smoothing:--label-smoothing 0;heavy_ball:--no-nesterov"
        default_grid+=";batch128:--batch-size 128 --lr 0.2;dropout:--dropout;fp32:--precision fp32"
        default_prefix=ablate
        ;;
    winograd_relu)
        default_grid="lr0.1:--lr 0.1;precond:--lr 0.1 --precondition position_rms;lr0.2:--lr 0.2"
        default_grid+=";wd1e-4:--weight-decay 1e-4;e60:--lr 0.1 --epochs 60"
        default_prefix=wr_grid
        ;;
    *)
        echo "grid.sh: METHOD must be spatial or winograd_relu, got '$METHOD'" >&2
        exit 2
        ;;
esac
GRID=${GRID:-$default_grid}
PREFIX=${PREFIX:-$default_prefix}
limit=()
[ -n "${LIMIT_S:-}" ] && limit=(timeout "$LIMIT_S")

here=$(dirname "${BASH_SOURCE[0]}")
common="$(RECIPE=paper DENSE_EPOCHS=$EPOCHS DATA=$DATA bash "$here/cifar10.sh" "$network" flags) --method $METHOD"
IFS=';' read -ra entries <<<"$GRID"
for entry in "${entries[@]}"; do
    if [[ "$entry" != *:* || -z "${entry%%:*}" ]]; then
        echo "grid.sh: a GRID entry is name:flags (flags may be empty), got '$entry'" >&2
        exit 2
    fi
done
AT_ONCE=${AT_ONCE:-${#entries[@]}}
if ! [[ "$AT_ONCE" =~ ^[1-9][0-9]*$ ]]; then
    echo "grid.sh: AT_ONCE must be a whole number of runs >= 1, got '$AT_ONCE'" >&2
    exit 2
fi
status=0
running=0
for entry in "${entries[@]}"; do
    if [ "$running" -ge "$AT_ONCE" ]; then
        wait -n || status=$?  # 124: stopped by LIMIT_S, resumable
        running=$((running - 1))
    fi
    name=${entry%%:*} flags=${entry#*:} out=$RUNS/${PREFIX}_${network}_$name
    mkdir -p "$out"
    if [ -f "$out/last.pt" ]; then
        args=(--out "$out" --resume)
    else
        # shellcheck disable=SC2206  # flags are words on purpose: later flags override the common ones
        args=($common $flags --out "$out" --checkpoint-every-s 180)
    fi
    "${limit[@]}" $PYTHON -m winosim train "${args[@]}" --threads "$THREADS" --no-progress >>"$out/log.txt" 2>&1 &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=$?
    running=$((running - 1))
done
exit "$status"
exit
}
