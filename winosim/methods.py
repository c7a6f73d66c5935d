"""The five methods the paper compares, and every rule about them: names, labels, display order, which
trace variant supplies each one's masks, and in which domain each multiplies in a layer of each kind.

| method            | label                  | masks from variant | domain on a `kind="winograd"` layer |
|-------------------|------------------------|--------------------|-------------------------------------|
| `dense_spatial`   | dense spatial          | none (dense)       | spatial                             |
| `pruned_spatial`  | pruned spatial         | `spatial`          | spatial                             |
| `dense_winograd`  | dense Winograd         | none (dense)       | Winograd                            |
| `native_winograd` | native pruned Winograd | `native`           | Winograd                            |
| `winograd_relu`   | Winograd-ReLU          | `winograd_relu`    | Winograd (ReLU after the input transform) |

Layers of kind "spatial" (the stem, strided and 1x1 convolutions, FC) multiply spatially in every method.
A dense method is always available; a sparse one only when the trace has a variant of its source method.
Everything else (counting, lowering, the simulator, tables, sweeps and figures) asks this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry

Domain = Literal["winograd", "spatial"]
VariantMethod = Literal["spatial", "native", "winograd_relu"]

VARIANT_METHODS: tuple[str, ...] = ("spatial", "native", "winograd_relu")
"""How a trace variant was trained (and so which masks it holds)."""


@dataclass(frozen=True)
class Method:
    """One compared method: `source` is the variant method supplying its masks (None: dense, no masks);
    `winograd` says whether it multiplies in the Winograd domain on Winograd-eligible layers; `relu_in_winograd`
    whether its input transform is followed by a ReLU (Winograd-ReLU)."""

    name: str
    label: str
    source: VariantMethod | None
    winograd: bool
    relu_in_winograd: bool = False

    @property
    def dense(self) -> bool:
        return self.source is None

    def domain(self, layer: LayerGeometry) -> Domain:
        """Where this method multiplies in `layer`."""
        return "winograd" if self.winograd and layer.kind == "winograd" else "spatial"


METHOD_SPECS: tuple[Method, ...] = (
    Method("dense_spatial", "dense spatial", None, winograd=False),
    Method("pruned_spatial", "pruned spatial", "spatial", winograd=False),
    Method("dense_winograd", "dense Winograd", None, winograd=True),
    Method("native_winograd", "native pruned Winograd", "native", winograd=True),
    Method("winograd_relu", "Winograd-ReLU", "winograd_relu", winograd=True, relu_in_winograd=True),
)
"""Every method, in display order (the rows of every comparison table)."""

METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_SPECS)
"""Method names in display order."""

METHOD_LABELS: dict[str, str] = {m.name: m.label for m in METHOD_SPECS}
"""Human labels of the methods, for tables and figures."""

DENSE_METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_SPECS if m.dense)

_BY_NAME: dict[str, Method] = {m.name: m for m in METHOD_SPECS}
_BY_SOURCE: dict[str, Method] = {m.source: m for m in METHOD_SPECS if m.source is not None}


def method(name: str) -> Method:
    """The method called `name`; an unknown name raises ConfigError listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def check_methods(names: Iterable[str]) -> tuple[str, ...]:
    """`names` as a tuple, after checking that it selects at least one method, each known and named once
    (ConfigError naming the unknown or repeated ones)."""
    selected = tuple(names)
    if not selected:
        raise ConfigError(f"no method selected; known: {', '.join(METHODS)}")
    unknown = [name for name in selected if name not in _BY_NAME]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    repeated = sorted({name for name in selected if selected.count(name) > 1})
    if repeated:
        raise ConfigError(f"method(s) {', '.join(repeated)} selected more than once")
    return selected


def variant_domain(variant_method: str, layer: LayerGeometry) -> Domain:
    """Where the masks of a variant of `variant_method` live in `layer` (the domain of the method it supplies)."""
    return _BY_SOURCE[variant_method].domain(layer)


def sorted_methods(names: Iterable[str]) -> list[str]:
    """Distinct `names` in display order; names that are not methods go last, alphabetically."""
    present = set(names)
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


class _Variant(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def method(self) -> str: ...


class _WithVariants(Protocol):
    """What `available` reads of a trace (`winosim.trace.Trace`), so that this module does not import it."""

    @property
    def variants(self) -> Sequence[_Variant]: ...


def available(trace: _WithVariants) -> dict[str, tuple[str | None, ...]]:
    """For each method, the variants of `trace` that supply its masks (None for the dense methods); () =
    unavailable."""
    return {
        spec.name: (None,) if spec.dense else tuple(v.name for v in trace.variants if v.method == spec.source)
        for spec in METHOD_SPECS
    }
