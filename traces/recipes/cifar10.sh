#!/usr/bin/env bash
# Train the three variants of one network on CIFAR-10 with a recipe of traces/README.md (RECIPE below), then
# extract its trace. Resumable: re-running continues each run from its last checkpoint.
#
#   RECIPE=paper bash traces/recipes/cifar10.sh vgg_nagadomi train   # issue 10: many hours of a CPU; GPU: minutes
#   bash traces/recipes/cifar10.sh vgg_nagadomi train   # budget recipe: ~115 min of one core
#   bash traces/recipes/cifar10.sh vgg_nagadomi trace   # density search + traces/vgg_nagadomi.npz
#   bash traces/recipes/cifar10.sh resnet18 train       # ~125 min of one core
#   bash traces/recipes/cifar10.sh resnet18 trace
#   RECIPE=paper bash traces/recipes/cifar10.sh vgg_nagadomi flags   # the dense phase's flags (for wr_grid.sh)
#   RECIPE=paper LABEL=cpu_e28 bash traces/recipes/cifar10.sh resnet18 logs   # the runs' logs into the checkout:
#       traces/recipes/logs/LABEL_<run folder> (LABEL default cpu, LOGS_DIR default traces/recipes/logs)
#
# Environment: DATA (CIFAR-10 folder, default ../shared/data/cifar10), RUNS (run folders, default runs/),
# PYTHON (default python), THREADS (torch threads per process, default 1), PROCESSES (N: each run data-parallel
# over N processes, `--processes N`, e.g. one per GPU of a multi-GPU machine; default one), PARALLEL (1: the native run starts
# beside the spatial one once the dense model is saved, Winograd-ReLU beside the native one once the spatial run
# ends, and whichever of those two is left alone gets both runs' threads from its next checkpoint on, via a
# `threads` file in its folder (bash >= 5.1); the spatial run has both runs' threads until the native run starts;
# for two cores; all: the three runs at once, for a GPU; default 0,
# one run at a time), WR_FROM (paper recipe: scratch, the default, trains Winograd-ReLU from scratch as the
# paper does; spatial starts it from the trained spatial model with a 4-epoch fine-tune, measured short of
# it; a path RUN/phase0_dense.pt prunes that Winograd-ReLU run's dense model with the recipe's schedule and
# WR_FLAGS, `--branch-from`), WR_FLAGS (paper recipe: flags for the Winograd-ReLU run after the recipe's, e.g.
# "--lr 0.1 --retrain-lr 0.01"), DENSE_EPOCHS (paper recipe: dense epochs, default 16 for VGG-nagadomi and 18 for ResNet-18; the shipped
# VGG-nagadomi trace used 30), RECIPE (budget, the default: what made resnet18.npz; full: whole-dataset
# step-decay epochs, superseded; paper: issue 10's one-cycle recipe aimed at dense >= 92%, see docs/training.md;
# what made vgg_nagadomi.npz), METHODS (comma-separated: which runs `train` trains and `trace` extracts, default
# spatial,native,winograd_relu; with fewer, `trace` extracts those and merges them into the trace in KEEP, default
# the shipped traces/<network>.npz, keeping its other variants bit for bit: `winosim merge`; native needs the
# spatial run's dense model).
#
#   RECIPE=paper METHODS=winograd_relu WR_FLAGS="--lr 0.1 --epochs 80 --retrain-lr 0.01" bash traces/recipes/cifar10.sh vgg_nagadomi train
#   RECIPE=paper METHODS=winograd_relu bash traces/recipes/cifar10.sh vgg_nagadomi trace   # replaces that variant only
set -euo pipefail
{ # one block, parsed whole before it runs: editing this file while it runs cannot change what it does
network=${1:?usage: $0 vgg_nagadomi|resnet18 train|trace|logs|flags}
stage=${2:?usage: $0 vgg_nagadomi|resnet18 train|trace|logs|flags}
DATA=${DATA:-../shared/data/cifar10}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python}
THREADS=${THREADS:-1}

RECIPE=${RECIPE:-budget}
case $RECIPE:$network in
paper:vgg_nagadomi | paper:resnet18)
    # issue 10: one-cycle SGD (Nesterov, batch 256, peak 0.4, label smoothing 0.1), bf16 where native,
    # whole training set per epoch, all 10,000 test images; finer pruning steps near the end.
    prefix=paper_$network
    dense="--epochs ${DENSE_EPOCHS:-$([ "$network" = resnet18 ] && echo 18 || echo 16)} --lr 0.4"
    search="--densities 0.7,0.5,0.4,0.35,0.3,0.25,0.2,0.17,0.14,0.12,0.1 --retrain-epochs 2 --retrain-lr 0.04"
    test=""
    extract="--images $([ "$network" = resnet18 ] && echo 8 || echo 16)"
    within=0.5
    ;;
full:vgg_nagadomi | full:resnet18)
    prefix=full_$network
    dense="--epochs 60 --lr 0.1"                                # whole training set per epoch
    search="--densities 0.7,0.6,0.5,0.4,0.35,0.3,0.25,0.2,0.15,0.1 --retrain-epochs 3"
    test=""
    extract="--images $([ "$network" = resnet18 ] && echo 8 || echo 16)"
    within=1.0
    ;;
budget:vgg_nagadomi)
    prefix=vgg
    dense="--epochs 7 --epoch-images 8000"                      # 56,000 images
    search="--densities 0.7,0.5,0.4,0.3,0.25,0.2,0.15,0.1 --retrain-epochs 1 --retrain-epoch-images 3000"
    test="--test-limit 2000"
    extract="--images 16 --test-limit 10000"
    within=1.0                                                  # issue 6's tolerance
    ;;
budget:resnet18)
    prefix=resnet18
    dense="--epochs 4 --epoch-images 7000"                      # 28,000 images
    search="--densities 0.6,0.45,0.35,0.25,0.18,0.12 --retrain-epochs 1 --retrain-epoch-images 1280"
    test="--test-limit 1000"
    extract="--images 8 --test-limit 2000"
    # Not issue 6's 1.0: one standard error of a 1,000-image accuracy near 58% is 1.6 points, and with
    # 1,280-image retraining steps no pruned spatial or native model stays within 1.0 point (their best
    # are -1.7 and -2.6), so 1.0 would trace them unpruned (traces/README.md).
    within=3.0
    ;;
*) echo "unknown recipe:network $RECIPE:$network (paper, budget or full; vgg_nagadomi or resnet18)" >&2; exit 2 ;;
esac

if [ "$RECIPE" = paper ]; then
    common="--network $network --data $DATA --batch-size 256 --schedule onecycle --label-smoothing 0.1 --no-dropout"
    common="$common --channels-last --precision auto"
elif [ "$RECIPE" = full ]; then
    common="--network $network --data $DATA --batch-size 128 --retrain-lr 0.01 --precision auto"
else
    common="--network $network --data $DATA --batch-size 64 --lr 0.05 --retrain-lr 0.01 --no-dropout --precision fp32"
fi
common="$common $test"

ALL_METHODS=spatial,native,winograd_relu
METHODS=${METHODS:-$ALL_METHODS}
methods=()
for method in ${METHODS//,/ }; do
    case ",$ALL_METHODS," in
    *",$method,"*) [[ " ${methods[*]} " == *" $method "* ]] || methods+=("$method") ;;
    *) echo "unknown method $method in METHODS=$METHODS (spatial, native, winograd_relu)" >&2; exit 2 ;;
    esac
done
[ ${#methods[@]} -gt 0 ] || { echo "METHODS is empty (spatial, native, winograd_relu)" >&2; exit 2; }
wanted() { [[ " ${methods[*]} " == *" $1 "* ]]; }
every_method() { [ ${#methods[@]} -eq 3 ]; }

train() { # run folder, method-specific arguments
    local out=$RUNS/$1; shift
    mkdir -p "$out"
    if [ -f "$out/last.pt" ]; then
        $PYTHON -m winosim train --out "$out" --resume --threads "${run_threads:-$THREADS}" --no-progress \
            ${PROCESSES:+--processes "$PROCESSES"} >>"$out/log.txt" 2>&1
    else
        $PYTHON -m winosim train $common --out "$out" --threads "${run_threads:-$THREADS}" --checkpoint-every-s 180 \
            --no-progress ${PROCESSES:+--processes "$PROCESSES"} "$@" >>"$out/log.txt" 2>&1
    fi
    echo "$(date -u +%FT%TZ) $out done" >>"$RUNS/$prefix.driver.log"
}

native_after_dense() { # the native run once the spatial dense model exists, while the spatial run goes on
    local dense_pt=$RUNS/${prefix}_spatial/phase0_dense.pt
    while [ ! -f "$dense_pt" ] && kill -0 "$1" 2>/dev/null; do sleep "${POLL_S:-60}"; done
    [ -f "$dense_pt" ] || return 0
    # PARALLEL=1: the spatial run hands one share of its threads to this run (read at its next checkpoint)
    [ "${PARALLEL:-0}" = 1 ] && echo "$THREADS" >"$RUNS/${prefix}_spatial/threads"
    train ${prefix}_native --method native --init-from "$dense_pt" --epochs 0 $search
}

wr_after_dense() { # the Winograd-ReLU run from the spatial dense model once it exists (PARALLEL=all)
    local dense_pt=$RUNS/${prefix}_spatial/phase0_dense.pt
    while [ ! -f "$dense_pt" ] && kill -0 "$1" 2>/dev/null; do sleep "${POLL_S:-60}"; done
    [ -f "$dense_pt" ] && train_winograd_relu
}

train_winograd_relu() {
    if [ "$RECIPE" = paper ] && [ "${WR_FROM:-scratch}" = spatial ]; then
        # Q = G g G^T from the trained spatial dense model, then a short dense fine-tune with the ReLU in the
        # Winograd domain (measured short of training from scratch, the default, as the paper does)
        train ${prefix}_winograd_relu --method winograd_relu --init-from "$RUNS/${prefix}_spatial/phase0_dense.pt" \
            --epochs 4 --lr 0.1 --warmup 0.1 $search
    elif [ "$RECIPE" = paper ] && [ "${WR_FROM:-scratch}" != scratch ]; then
        # WR_FROM=RUN/phase0_dense.pt: that run's dense model, pruned with this recipe's schedule (`--branch-from`
        # checks that the dense flags are the ones that run was trained with)
        train ${prefix}_winograd_relu --method winograd_relu $dense $search ${WR_FLAGS:-} --branch-from "$WR_FROM"
    else
        train ${prefix}_winograd_relu --method winograd_relu $dense $search ${WR_FLAGS:-}
    fi
}

case $stage in
train)
    mkdir -p "$RUNS"
    echo "$(date -u +%FT%TZ) $network train start (${methods[*]})" >>"$RUNS/$prefix.driver.log"
    # a `threads` file left by an earlier invocation would override --threads at the first checkpoint
    for method in "${methods[@]}"; do rm -f "$RUNS/${prefix}_$method/threads"; done
    if ! every_method; then
        # some of the runs, one at a time, in the recipe's order (native from the spatial dense model)
        if wanted spatial; then train ${prefix}_spatial --method spatial $dense $search; fi
        if wanted winograd_relu; then train_winograd_relu; fi
        if wanted native; then
            dense_pt=$RUNS/${prefix}_spatial/phase0_dense.pt
            [ -f "$dense_pt" ] || { echo "native needs the spatial dense model $dense_pt (METHODS=spatial first)" >&2; exit 2; }
            train ${prefix}_native --method native --init-from "$dense_pt" --epochs 0 $search
        fi
    elif [ "${PARALLEL:-0}" = all ]; then
        # a GPU: all three at once (Winograd-ReLU from scratch, or from the spatial dense model once it exists)
        train ${prefix}_spatial --method spatial $dense $search &
        spatial_pid=$!
        native_after_dense "$spatial_pid" &
        native_pid=$!
        if [ "${WR_FROM:-scratch}" = scratch ]; then train_winograd_relu & else wr_after_dense "$spatial_pid" & fi
        wr_pid=$!
        wait "$spatial_pid" "$native_pid" "$wr_pid"
    elif [ "${PARALLEL:-0}" = 1 ]; then
        # two cores: the native run starts beside the spatial one as soon as the dense model is saved
        # alone on the machine until its dense model exists and the native run starts beside it
        spatial_threads=$THREADS
        [ -f "$RUNS/${prefix}_spatial/phase0_dense.pt" ] || spatial_threads=$((2 * THREADS))
        run_threads=$spatial_threads train ${prefix}_spatial --method spatial $dense $search &
        spatial_pid=$!
        native_after_dense "$spatial_pid" &
        native_pid=$!
        wait "$spatial_pid"
        train_winograd_relu &
        wr_pid=$!
        if [ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -ge 51 ]; then
            # whichever ends first, the other takes its cores (read at the other's next checkpoint)
            wait -n -p first_pid "$native_pid" "$wr_pid"
            if [ "$first_pid" = "$native_pid" ]; then left_pid=$wr_pid left=${prefix}_winograd_relu
            else left_pid=$native_pid left=${prefix}_native; fi
            mkdir -p "$RUNS/$left" && echo $((2 * THREADS)) >"$RUNS/$left/threads"
            wait "$left_pid"
        else
            wait "$native_pid"
            wait "$wr_pid"
        fi
    else
        train ${prefix}_spatial --method spatial $dense $search
        train_winograd_relu
        train ${prefix}_native --method native --init-from "$RUNS/${prefix}_spatial/phase0_dense.pt" --epochs 0 $search
    fi
    ;;
trace)
    folders=()
    for method in "${methods[@]}"; do folders+=("$RUNS/${prefix}_$method"); done
    if every_method; then
        $PYTHON -m winosim trace --select-within "$within" "${folders[@]}" --data "$DATA" $extract --seed 0 \
            --threads "$THREADS" --out "traces/$network.npz"
    else
        keep=${KEEP:-traces/$network.npz}
        [ -f "$keep" ] || { echo "KEEP=$keep: no trace to merge ${methods[*]} into" >&2; exit 2; }
        part=$RUNS/${prefix}_$(IFS=_; echo "${methods[*]}").npz
        $PYTHON -m winosim trace --select-within "$within" "${folders[@]}" --data "$DATA" $extract --seed 0 \
            --threads "$THREADS" --out "$part"
        $PYTHON -m winosim merge "$keep" "$part" --output "traces/$network.npz"
    fi
    ;;
logs)
    # the runs' text logs, not their checkpoints, copied into the checkout: a run folder outside it goes with its
    # machine, so run this before a session ends, not only when a run is done (an earlier copy is replaced whole)
    logs_dir=${LOGS_DIR:-traces/recipes/logs}
    case ${LABEL:-cpu} in */* | .*) echo "LABEL=$LABEL: a folder-name prefix, without / or a leading dot" >&2; exit 2 ;; esac
    for method in "${methods[@]}"; do
        src=$RUNS/${prefix}_$method
        [ -d "$src" ] || { echo "no run folder $src to copy the logs of (RUNS, RECIPE, METHODS)" >&2; exit 2; }
    done
    mkdir -p "$logs_dir"
    tmp=
    trap 'rm -rf "$tmp"' EXIT # a copy that fails part-way leaves no temporary folder
    for method in "${methods[@]}"; do
        src=$RUNS/${prefix}_$method
        dest=$logs_dir/${LABEL:-cpu}_${prefix}_$method
        tmp=$(mktemp -d "$logs_dir/.copy.XXXXXX")
        for file in config.json metrics.jsonl progress.log log.txt notes.txt; do
            if [ -s "$src/$file" ]; then cp "$src/$file" "$tmp/"; fi
        done
        if [ -s "$RUNS/$prefix.driver.log" ]; then cp "$RUNS/$prefix.driver.log" "$tmp/driver.log"; fi
        rm -rf "$dest"
        mv "$tmp" "$dest"
        tmp=
        echo "$dest: $(cd "$dest" && ls | tr '\n' ' ')"
    done
    ;;
flags)
    echo $common $dense
    ;;
*) echo "unknown stage $stage (train, trace, logs or flags)" >&2; exit 2 ;;
esac
exit
}
