"""Between layers: where activations live, the order of the batch, and weights prefetched across layers.

A layer alone (`winosim.sim.layer`) reads its input map from DRAM and writes its output back. This module
decides, for a whole network under one method, what changes when layers share the global buffer
(`Memory.activation_residency`, `Memory.batch_order`, `Memory.weight_prefetch`; docs/simulator.md):

- *Tensors and their lifetimes.* A layer's output is a tensor read by the next layer that is not a ResNet
  shortcut (`<block>.shortcut`, which reads the block's input like `<block>.conv1`). A ResNet block's input
  is also the residual operand of the block's last layer (the addition), so it lives from the layer that
  produced it to the last layer of the block (`tensor_lifetimes`).
- *Working sets.* While a layer runs, its plan needs its largest k-block's weights (every layer's weights,
  when image order holds them all), its double-buffered passes (inputs and outputs) and, when the plan
  keeps its input map across k-blocks, that map (`working_set_bytes`).
- *Residency* (`buffer`): in layer order, tensors are decided one after another from the first layer: a
  tensor keeps on chip the most bytes that fit beside the working set and the tensors already kept at every
  layer of its lifetime (greedy, deterministic), stored as its readers store their input (compressed where
  that domain has zeros; the dense spatial map a Winograd input transform reads is dense). The rest spills:
  the producer writes it to DRAM and its readers read it back. With `dram`, nothing is kept. So at every
  layer, working set + kept tensors <= the buffer (an invariant the tests check).
- *Batch order.* `layer`: the trace's N images go through a layer before the next: weights are fetched
  once per layer, and a tensor is the N images' maps. `image`: one image at a time through the whole
  network: a tensor is one image's map (decided per image), and a layer's weights are fetched again for
  every image unless every layer's weights fit in the buffer beside the largest passes (then they are
  fetched once and stay).
- *Weight prefetch* (`next_layer`): when the buffer has room beside the running layer for the next layer's
  first k-block of weights, they are loaded in the cycles the DRAM channel would otherwise be idle during
  the running layer (the lowest priority, so the running layer is never delayed); what the idle cycles
  cannot carry is loaded when the next layer starts, as without prefetch.

The result, one `LayerMemory` per layer, is applied to the layer's per-pass traffic by `pass_bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from winosim.arch import Arch
from winosim.sim.plan import LayerPlan, input_footprint, weight_footprint
from winosim.sim.traffic import Traffic
from winosim.workload import IntArray, LayerWork

_BLOCK_LAYER = re.compile(r"^(?P<block>.+)\.(?P<part>conv1|conv2|shortcut)$")


@dataclass(frozen=True)
class LayerMemory:
    """What sharing the buffer across layers decides for one layer.

    `input_kept` and `output_kept` are, per image, the fraction of the layer's input map read from the
    buffer instead of DRAM and of its output kept there instead of written to DRAM. `image_order`: the
    layer runs image by image. `weight_fetches`: how often each k-block's weights come from DRAM (1, or the
    image count in image order when the buffer does not hold every layer's weights). `prefetch_room`: the
    previous layer leaves room in the buffer for this layer's first k-block of weights (with prefetch on).
    `pressure_bytes`: the largest buffer occupancy while the layer runs (working set + kept tensors).
    `spills`: with `buffer` residency, the layer's output is read by later layers, so what it writes to DRAM
    is a spill."""

    input_kept: tuple[Fraction, ...]
    output_kept: tuple[Fraction, ...]
    image_order: bool
    weight_fetches: int
    prefetch_room: bool
    pressure_bytes: int
    spills: bool

    @staticmethod
    def alone(images: int) -> LayerMemory:
        """A layer on its own: everything through DRAM, all images at once, no prefetch."""
        zero = (Fraction(0),) * images
        return LayerMemory(
            zero, zero, image_order=False, weight_fetches=1, prefetch_room=False, pressure_bytes=0, spills=False
        )


@dataclass(frozen=True)
class Tensor:
    """A layer's output: produced by layer `producer`, read as input by `readers`, needed until layer `last`
    (inclusive; a residual operand outlives its readers)."""

    producer: int
    readers: tuple[int, ...]
    last: int


def tensor_lifetimes(names: Sequence[str]) -> tuple[Tensor, ...]:
    """The tensors of a network whose layers, in order, are named `names` (see the module docstring)."""
    readers: dict[int, list[int]] = {}
    last: dict[int, int] = {}
    chain: int | None = None  # the last layer that is not a shortcut
    block_input: dict[str, int | None] = {}
    for index, name in enumerate(names):
        match = _BLOCK_LAYER.match(name)
        block, part = (match["block"], match["part"]) if match else (None, None)
        if block is not None and part == "conv1":
            block_input[block] = chain
        source = block_input.get(block) if (block is not None and part == "shortcut") else chain
        if source is not None:
            readers.setdefault(source, []).append(index)
            last[source] = max(last.get(source, index), index)
        if block is not None and block_input.get(block) is not None:
            operand = block_input[block]
            assert operand is not None
            last[operand] = max(last[operand], index)  # the residual operand, added at the block's end
        if part != "shortcut":
            chain = index
    return tuple(Tensor(p, tuple(readers[p]), last[p]) for p in sorted(readers))


def _input_map_bytes(work: LayerWork, plan: LayerPlan, arch: Arch) -> IntArray:
    """Per image, the layer's whole input map as the layer stores it (actual non-zeros)."""
    layer = work.layer
    return np.array(
        [
            input_footprint(
                work, plan.activation_format, arch.data_width_bits, n, (0, layer.in_height), (0, layer.in_width)
            ).bytes
            for n in range(work.images)
        ],
        dtype=np.int64,
    )


def _weight_bytes(work: LayerWork, plan: LayerPlan, arch: Arch) -> IntArray:
    """Per k-block, its stored weights."""
    return np.array(
        [weight_footprint(work, plan.weight_format, arch.data_width_bits, k0, k1).bytes for k0, k1 in plan.kblocks],
        dtype=np.int64,
    )


def _pass_io_bytes(traffic: Traffic, blocks: int) -> int:
    """Double-buffered inputs and outputs of the layer's largest pass."""
    groups = len(traffic.tiles)
    inputs = traffic.read_input_bytes[:groups]  # the first k-block fetches every group's inputs
    outputs = traffic.write_bytes.reshape(blocks, groups)
    return 2 * int((inputs[None, :] + outputs).max())


@dataclass(frozen=True)
class LayerFootprint:
    """What the network's memory decisions need of one layer, small enough to keep for every layer while
    the layers' masks and lowered work are streamed: its name, per image its whole input map as stored
    (`input_bytes`), per k-block its stored weights (`weight_bytes`), its largest double-buffered pass
    (`pass_io_bytes`) and whether its plan keeps the input map across several k-blocks (`reserves_input`)."""

    name: str
    input_bytes: IntArray
    weight_bytes: IntArray
    pass_io_bytes: int
    reserves_input: bool


def layer_footprint(work: LayerWork, plan: LayerPlan, traffic: Traffic, arch: Arch) -> LayerFootprint:
    """The `LayerFootprint` of a lowered layer under its plan and traffic."""
    return LayerFootprint(
        name=work.layer.name,
        input_bytes=_input_map_bytes(work, plan, arch),
        weight_bytes=_weight_bytes(work, plan, arch),
        pass_io_bytes=_pass_io_bytes(traffic, len(plan.kblocks)),
        reserves_input=plan.input_resident and len(plan.kblocks) > 1,
    )


def network_memory(layers: Sequence[LayerFootprint], arch: Arch) -> tuple[LayerMemory, ...]:
    """One `LayerMemory` per layer of one method's network, in layer order (see the module docstring)."""
    mem = arch.memory
    items = list(layers)
    images = len(items[0].input_bytes) if items else 0
    capacity = mem.global_buffer_bytes
    image_order = mem.batch_order == "image"
    scopes = [(n,) for n in range(images)] if image_order else [tuple(range(images))]
    input_bytes = [item.input_bytes for item in items]
    weights = [item.weight_bytes for item in items]
    io = [item.pass_io_bytes for item in items]
    reserved = [item.reserves_input for item in items]
    scope_input = max(len(s) for s in scopes) if scopes else 0  # images a reserved input map holds
    reserve = [int(np.sort(b)[-scope_input:].sum()) if r else 0 for b, r in zip(input_bytes, reserved, strict=True)]
    all_weights = sum(int(w.sum()) for w in weights)
    held = image_order and all_weights + max((a + b for a, b in zip(io, reserve, strict=True)), default=0) <= capacity
    working = [(all_weights if held else int(w.max())) + a + b for w, a, b in zip(weights, io, reserve, strict=True)]
    tensors = tensor_lifetimes([item.name for item in items])
    kept_out: list[list[Fraction]] = [[Fraction(0)] * images for _ in items]
    kept_in: list[list[Fraction]] = [[Fraction(0)] * images for _ in items]
    pressure = [list(working) for _ in scopes]
    for s, scope in enumerate(scopes):
        for tensor in tensors:
            size = max(int(input_bytes[r][list(scope)].sum()) for r in tensor.readers)
            span = [
                j
                for j in range(tensor.producer, tensor.last + 1)
                if not (reserved[j] and j in tensor.readers)  # inside the reader's own reserved input map
            ]
            room = min((capacity - pressure[s][j] for j in span), default=0)
            kept = max(0, min(size, room)) if mem.activation_residency == "buffer" and size > 0 else 0
            for j in span:
                pressure[s][j] += kept
            fraction = Fraction(kept, size) if size else Fraction(0)
            for n in scope:
                kept_out[tensor.producer][n] = fraction
                for r in tensor.readers:
                    kept_in[r][n] = fraction
    peak = [max(p[j] for p in pressure) for j in range(len(items))]
    producers = {tensor.producer for tensor in tensors}
    fetches = 1 if (held or not image_order) else images
    return tuple(
        LayerMemory(
            input_kept=tuple(kept_in[j]),
            output_kept=tuple(kept_out[j]),
            image_order=image_order,
            weight_fetches=fetches,
            prefetch_room=(
                mem.weight_prefetch == "next_layer" and j > 0 and peak[j - 1] + int(weights[j][0]) <= capacity
            ),
            pressure_bytes=peak[j],
            spills=mem.activation_residency == "buffer" and j in producers,
        )
        for j in range(len(items))
    )


@dataclass(frozen=True)
class PassBytes:
    """A layer's passes in the order they run, with the network's memory decisions applied: per pass its
    position in the plan's k-block-major order (`order`), its image, its DRAM reads (weights, inputs) and
    writes, and the input and output bytes that stay in the buffer instead. `runs` are (first, end) of the
    passes that run back to back: the whole layer, or one run per image in image order."""

    order: IntArray
    image: IntArray
    read_weight_bytes: IntArray
    read_input_bytes: IntArray
    write_bytes: IntArray
    kept_input_bytes: IntArray
    kept_output_bytes: IntArray
    runs: tuple[tuple[int, int], ...]

    @property
    def read_bytes(self) -> IntArray:
        return self.read_weight_bytes + self.read_input_bytes


def _keep(bytes_: IntArray, fractions: Sequence[Fraction], images: IntArray) -> IntArray:
    """floor(bytes x fraction of the pass's image), exactly."""
    num = np.array([f.numerator for f in fractions], dtype=object)[images]
    den = np.array([f.denominator for f in fractions], dtype=object)[images]
    return np.asarray(bytes_.astype(object) * num // den, dtype=np.int64)


def pass_bytes(plan: LayerPlan, traffic: Traffic, memory: LayerMemory, prefetched: int = 0) -> PassBytes:
    """The layer's per-pass DRAM traffic under `memory`, with `prefetched` bytes of its first weights already
    loaded during the previous layer (taken from the first pass of each run, in run order)."""
    blocks, groups = len(plan.kblocks), len(plan.groups)
    group_image = np.array([g.image for g in plan.groups], dtype=np.int64)
    image = np.tile(group_image, blocks)
    block = np.repeat(np.arange(blocks, dtype=np.int64), groups)
    weight = traffic.read_weight_bytes.copy()
    if memory.weight_fetches > 1 and plan.weights_resident:  # fetched again for each image's first group
        first_of_image = np.ones(groups, dtype=bool)
        first_of_image[1:] = group_image[1:] != group_image[:-1]
        per_block = traffic.read_weight_bytes.reshape(blocks, groups)[:, 0]
        weight = np.where(np.tile(first_of_image, blocks), per_block[block], 0)
    if memory.image_order:
        order = np.lexsort((np.arange(blocks * groups), block, image))  # image-major, then k-block, then group
    else:
        order = np.arange(blocks * groups, dtype=np.int64)
    weight, image = weight[order], image[order]
    inputs, writes = traffic.read_input_bytes[order], traffic.write_bytes[order]
    kept_in = _keep(inputs, memory.input_kept, image)
    kept_out = _keep(writes, memory.output_kept, image)
    if memory.image_order:
        bounds = np.flatnonzero(np.diff(image)) + 1
        starts = [0, *bounds.tolist()]
        ends = [*bounds.tolist(), len(order)]
        runs = tuple(zip(starts, ends, strict=True))
    else:
        runs = ((0, len(order)),)
    weight = weight.copy()
    left = prefetched
    for first, _ in runs:  # the first k-block's weights open every run that fetches weights
        taken = min(left, int(weight[first]))
        weight[first] -= taken
        left -= taken
    arrays = (order, image, weight, inputs - kept_in, writes - kept_out, kept_in, kept_out)
    for array in arrays:
        array.setflags(write=False)
    return PassBytes(*arrays, runs=runs)
