#!/usr/bin/env bash
# Re-record the goldens of tests/test_golden_run.py after an intended change of the numbers (a new shipped
# trace, a deliberate change of the model), with the test's command lines and environment; each file is
# replaced only when its command succeeds.
#   bash tests/golden/record.sh                          # all three
#   bash tests/golden/record.sh vgg_nagadomi             # some: resnet18, vgg_nagadomi, synth
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
golden=$root/tests/golden
python=${PYTHON:-$(command -v python)}
work=$(mktemp -d "$golden/.record.XXXXXX")  # beside the goldens: the final mv is a rename
trap 'rm -rf "$work"' EXIT
winosim() { env -i PYTHONPATH="$root" PATH=/usr/bin:/bin "$python" -m winosim "$@"; }
names=("$@")
[ $# -gt 0 ] || names=(resnet18 vgg_nagadomi synth)
for name in "${names[@]}"; do
    case $name in
    resnet18 | vgg_nagadomi)
        file=run_${name}_pe64.json.gz
        (cd "$root" && winosim run --trace "traces/$name.npz" --pe 64 --format json --no-progress) >"$work/out"
        ;;
    synth)
        file=run_synth_resnet18_imagenet_seed0.json.gz
        (cd "$work" && winosim synth --network resnet18_imagenet --images 8 --seed 0 \
            --output synth_resnet18_imagenet_seed0.npz >/dev/null &&
            winosim run --trace synth_resnet18_imagenet_seed0.npz --format json --no-progress) >"$work/out"
        ;;
    *) echo "record.sh: unknown golden '$name' (resnet18, vgg_nagadomi, synth)" >&2; exit 2 ;;
    esac
    gzip -9 -n <"$work/out" >"$work/$file"
    mv "$work/$file" "$golden/$file"
    echo "recorded $file"
done
