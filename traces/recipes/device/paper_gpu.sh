#!/usr/bin/env bash
# Issue 10 on a lent GPU machine (the workplace's `device` tool: 64 MiB of working tree per call, results back
# through $OUT). Each call copies the CIFAR-10 parts it carries (.gpu/part*, made by pack_cifar.py) into a
# staging folder that lasts while the machine stays warm; once all shards are there it runs JOB for at most
# LIMIT_S seconds (resumable by the next call) and copies logs, metrics and tables to $OUT:
#   JOB=paper (default): the paper recipe's three runs of NETWORK at once (cifar10.sh, PARALLEL=all,
#     Winograd-ReLU from scratch as the paper does; DENSE_EPOCHS, WR_FLAGS and METHODS pass through), then the
#     trace when all of them are done (with fewer METHODS than three, merged into the shipped trace);
#   JOB=wr_grid: dense-only Winograd-ReLU runs of NETWORK side by side, one per GRID entry (name:flags;...),
#     each the paper recipe with those flags changed (traces/recipes/grid.sh, EPOCHS default 30): the search
#     for a Winograd-ReLU recipe that does not under-fit;
#   JOB=ablate: the same for dense spatial runs, by default the recipe itself and each of its choices turned
#     back (grid.sh's default spatial GRID, EPOCHS default 16: the recipe's own length).
#
#   bash traces/recipes/device/paper_gpu.sh        # carry .gpu/partN (and .whl: simpy) with each call
set -uo pipefail
export PYTHONUNBUFFERED=1
STAGE=${STAGE:-/root/winosim-gpu}
LIMIT_S=${LIMIT_S:-470}
OUT=${OUT:?OUT: the folder whose files come back}
SHARDS=${SHARDS:-6}
JOB=${JOB:-paper}
case "$JOB" in paper | wr_grid | ablate) ;; *) echo "paper_gpu.sh: JOB must be paper, wr_grid or ablate, got '$JOB'" >&2; exit 2 ;; esac
mkdir -p "$STAGE/parts" "$OUT"
{ date -u +%FT%TZ; nvidia-smi -L 2>&1; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'; } \
    >>"$OUT/env.txt" 2>&1

if [ ! -d "$STAGE/site/simpy" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STAGE/site" .whl/*.whl || exit 1
fi
export PYTHONPATH=$STAGE/site:$PWD

for shard in .gpu/part*/*.npz; do
    [ -f "$shard" ] && [ ! -f "$STAGE/parts/${shard##*/}" ] && cp "$shard" "$STAGE/parts/"
done
have=$(find "$STAGE/parts" -name '*.npz' | wc -l)
echo "shards staged: $have of $SHARDS" | tee -a "$OUT/env.txt"
[ "$have" -lt "$SHARDS" ] && exit 0
if [ ! -f "$STAGE/cifar10/.ok" ]; then
    python3 traces/recipes/device/pack_cifar.py unpack "$STAGE/parts" "$STAGE/cifar10" && touch "$STAGE/cifar10/.ok" || exit 1
fi

NETWORK=${NETWORK:-vgg_nagadomi}
export RECIPE=paper DATA=$STAGE/cifar10 RUNS=$STAGE/${RUNS_NAME:-runs} PYTHON=python3 THREADS=${THREADS:-2} POLL_S=5
start=$(date +%s)
if [ "$JOB" = wr_grid ] || [ "$JOB" = ablate ]; then
    method=$([ "$JOB" = ablate ] && echo spatial || echo winograd_relu)
    METHOD=$method PREFIX=$JOB EPOCHS=${EPOCHS:-$([ "$JOB" = ablate ] && echo 16 || echo 30)} LIMIT_S=$LIMIT_S \
        bash traces/recipes/grid.sh "$NETWORK"
    echo "$JOB: $(($(date +%s) - start)) s" | tee -a "$OUT/env.txt"
    tar -czf "$OUT/grid.tgz" -C "$RUNS" $(cd "$RUNS" && ls -d "$JOB"_*/{config.json,metrics.jsonl,progress.log,log.txt} 2>/dev/null)
    exit 0
fi
PARALLEL=all WR_FROM=scratch timeout "$LIMIT_S" bash traces/recipes/cifar10.sh "$NETWORK" train
echo "train: exit $? after $(($(date +%s) - start)) s" | tee -a "$OUT/env.txt"

methods=${METHODS:-spatial,native,winograd_relu}
runs=()
for method in ${methods//,/ }; do runs+=("$RUNS/paper_${NETWORK}_$method"); done
python3 -m winosim curve "${runs[@]}" --within 0.5 --output "$OUT/curve.md" 2>&1 | tail -3
finished=0
for run in "${runs[@]}"; do grep -qF " $run done" "$RUNS/paper_$NETWORK.driver.log" && finished=$((finished + 1)); done
if [ "$finished" -ge "${#runs[@]}" ] && [ ! -f "$OUT/$NETWORK.npz" ]; then
    bash traces/recipes/cifar10.sh "$NETWORK" trace >"$STAGE/trace.log" 2>&1 && cp "traces/$NETWORK.npz" "$OUT/"
    cp "$STAGE/trace.log" "$OUT/"
fi
tar -czf "$OUT/logs.tgz" -C "$RUNS" "paper_$NETWORK.driver.log" \
    $(cd "$RUNS" && ls -d paper_"$NETWORK"_*/{config.json,metrics.jsonl,progress.log,log.txt} 2>/dev/null)
