#!/usr/bin/env bash
# Issue 10 on a lent GPU machine (the workplace's `device` tool: 64 MiB of working tree per call, results back
# through $OUT). Each call copies the CIFAR-10 parts it carries (.gpu/part*, made by pack_cifar.py) into a
# staging folder that lasts while the machine stays warm; once all shards are there it trains the paper recipe's
# three VGG-nagadomi runs at once on the GPU (cifar10.sh, PARALLEL=all, Winograd-ReLU from scratch as the paper
# does) for at most LIMIT_S seconds, resumable by the next call, extracts the trace when all three are done, and
# copies logs, metrics, the density-search table and the trace to $OUT.
#
#   bash traces/recipes/device/paper_gpu.sh        # carry .gpu/partN (and .whl: simpy) with each call
set -uo pipefail
export PYTHONUNBUFFERED=1
STAGE=${STAGE:-/root/winosim-gpu}
LIMIT_S=${LIMIT_S:-470}
OUT=${OUT:?OUT: the folder whose files come back}
SHARDS=${SHARDS:-6}
mkdir -p "$STAGE/parts" "$OUT"
{ date -u +%FT%TZ; nvidia-smi -L 2>&1; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'; } \
    >>"$OUT/env.txt" 2>&1

if [ ! -d "$STAGE/site/simpy" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STAGE/site" .whl/*.whl || exit 1
fi
export PYTHONPATH=$STAGE/site:$PWD

for part in .gpu/part*; do [ -d "$part" ] && cp --update=none "$part"/*.npz "$STAGE/parts/"; done
have=$(find "$STAGE/parts" -name '*.npz' | wc -l)
echo "shards staged: $have of $SHARDS" | tee -a "$OUT/env.txt"
[ "$have" -lt "$SHARDS" ] && exit 0
if [ ! -f "$STAGE/cifar10/.ok" ]; then
    python3 traces/recipes/device/pack_cifar.py unpack "$STAGE/parts" "$STAGE/cifar10" && touch "$STAGE/cifar10/.ok" || exit 1
fi

export RECIPE=paper DATA=$STAGE/cifar10 RUNS=$STAGE/${RUNS_NAME:-runs} PYTHON=python3 THREADS=${THREADS:-2} POLL_S=5
start=$(date +%s)
PARALLEL=all WR_FROM=scratch timeout "$LIMIT_S" bash traces/recipes/cifar10.sh vgg_nagadomi train
echo "train: exit $? after $(($(date +%s) - start)) s" | tee -a "$OUT/env.txt"

runs=("$RUNS"/paper_vgg_nagadomi_{spatial,native,winograd_relu})
python3 -m winosim curve "${runs[@]}" --within 0.5 --output "$OUT/curve.md" 2>&1 | tail -3
if [ "$(grep -c ' done$' "$RUNS/paper_vgg_nagadomi.driver.log")" -ge 3 ] && [ ! -f "$OUT/vgg_nagadomi.npz" ]; then
    bash traces/recipes/cifar10.sh vgg_nagadomi trace >"$STAGE/trace.log" 2>&1 && cp traces/vgg_nagadomi.npz "$OUT/"
    cp "$STAGE/trace.log" "$OUT/"
fi
tar -czf "$OUT/logs.tgz" -C "$RUNS" paper_vgg_nagadomi.driver.log \
    $(cd "$RUNS" && ls -d paper_vgg_nagadomi_*/{config.json,metrics.jsonl,progress.log,log.txt} 2>/dev/null)
