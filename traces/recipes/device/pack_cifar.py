"""Move a CIFAR-10 `.npz` folder through size-limited transfers (a remote GPU machine's 64 MiB per call).

    python traces/recipes/device/pack_cifar.py pack ../shared/data/cifar10 .gpu --part-mb 50
    python traces/recipes/device/pack_cifar.py unpack .gpu/part*/ /tmp/cifar10

`pack` stores each shard's images as horizontal differences (mod 256, per channel), xz-compressed (CIFAR-10:
0.67 of the raw bytes), and groups the shards into folders `part0`, `part1`, ... of at most `--part-mb` each.
`unpack` rebuilds every shard with the same keys and checks each images array against the SHA-256 recorded at
packing time, so a transfer that went wrong fails loudly instead of training on damaged data.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np


def _pack_shard(source: Path, out: Path) -> None:
    with np.load(source, allow_pickle=False) as shard:
        images, labels = shard["images"], shard["labels"]
    residual = np.diff(images.astype(np.int16), axis=2, prepend=0).astype(np.uint8)  # (N, H, W, C)
    np.savez(
        out,
        residual_xz=np.frombuffer(lzma.compress(residual.tobytes(), preset=6), dtype=np.uint8),
        shape=np.array(images.shape, dtype=np.int64),
        labels=labels,
        sha256=np.array(hashlib.sha256(images.tobytes()).hexdigest()),
    )


def _unpack_shard(packed: Path, out: Path) -> None:
    with np.load(packed, allow_pickle=False) as shard:
        shape = tuple(int(v) for v in shard["shape"])
        residual = np.frombuffer(lzma.decompress(shard["residual_xz"].tobytes()), dtype=np.uint8).reshape(shape)
        labels, digest = shard["labels"], str(shard["sha256"])
    images = np.cumsum(residual, axis=2, dtype=np.uint8)  # wraps mod 256, inverting the differences
    if hashlib.sha256(images.tobytes()).hexdigest() != digest:
        raise SystemExit(f"error: {packed}: images do not match the SHA-256 recorded when packed")
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, labels=labels)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack")
    pack.add_argument("source", type=Path)
    pack.add_argument("out", type=Path)
    pack.add_argument("--part-mb", type=float, default=50.0)
    unpack = sub.add_parser("unpack")
    unpack.add_argument("parts", type=Path, nargs="+")
    unpack.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        shards = sorted(args.source.glob("*.npz"))
        if not shards:
            raise SystemExit(f"error: {args.source}: no .npz shards")
        part, used = 0, 0.0
        for shard in shards:
            staging = args.out / "staging"
            staging.mkdir(parents=True, exist_ok=True)
            _pack_shard(shard, staging / shard.name)
            size_mb = (staging / shard.name).stat().st_size / 1e6
            if used and used + size_mb > args.part_mb:
                part, used = part + 1, 0.0
            target = args.out / f"part{part}"
            target.mkdir(exist_ok=True)
            (staging / shard.name).replace(target / shard.name)
            used += size_mb
            print(f"{shard.name}: {size_mb:.1f} MB -> {target}", file=sys.stderr)
        (args.out / "staging").rmdir()
    else:
        packed_shards = [packed for folder in args.parts for packed in sorted(folder.glob("*.npz"))]
        if not packed_shards:
            raise SystemExit(f"error: no packed shards (.npz) in {', '.join(map(str, args.parts))}")
        args.out.mkdir(parents=True, exist_ok=True)
        for packed in packed_shards:
            _unpack_shard(packed, args.out / packed.name)
            print(f"{packed.name}: ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
