"""Memo keys from one typed place: a stage of the simulator declares the architecture fields it reads.

The simulator keeps what it derives from a layer's work for one design point in the work's `Memo`, so that
design points sharing the relevant parameters (a sweep) compute it once. A cached value is only correct
if its key names every parameter it depends on. Here that is enforced rather than hoped for:

- a `Stage` declares the dotted `Arch` fields it reads (`reads`), some of them only when another field has
  a given value (`reads_when`: the PE count matters to a plan only with the `output_channels` partition);
- `stage.key(arch, *inputs)` is the stage's `MemoKey`: its name, the values of its declared fields and
  the values it takes from earlier stages (`inputs`);
- `stage.view(arch)` is the architecture as the stage may see it: reading a field it did not declare (or a
  conditional one whose condition does not hold) raises `UndeclaredRead`. A stage computes from its view
  only, so a stage that starts reading a new field fails until the field is declared, and then the field is
  in its key: a sweep can never reuse an entry computed for another value of it.
"""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple, TypeVar, cast, get_type_hints

from winosim.arch import Arch

MEMO_ENTRIES = 64
"""Entries a `Memo` keeps (the least recently used is dropped first): a few dozen design points' worth of
plans, units and makespans per layer and method."""

T = TypeVar("T")


class UndeclaredRead(AttributeError):
    """A stage read an architecture field it does not declare (a bug in the stage, not a user error)."""


class MemoKey(NamedTuple):
    """The key of one stage's value: the stage, the values of the architecture fields it declares (in
    declaration order; None for a conditional field whose condition does not hold) and its other inputs.
    (A named tuple: built and hashed at C speed, on every layer of every design point.)"""

    stage: str
    fields: tuple[Hashable, ...]
    inputs: tuple[Hashable, ...] = ()


@dataclass(frozen=True)
class Stage:
    """A step of the simulator whose results are memoised: its name and the `Arch` fields it reads, as
    dotted paths (`pe_array.partition`, `data_width_bits`); `reads_when` maps a field read only under a
    condition to that condition, (field, value)."""

    name: str
    reads: tuple[str, ...]
    reads_when: Mapping[str, tuple[str, Hashable]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = _arch_fields()
        for path in (*self.reads, *self.reads_when, *(c for c, _ in self.reads_when.values())):
            if path not in known:
                raise ValueError(f"Stage {self.name!r}: {path!r} is not an architecture field")
        for path, (condition, _) in self.reads_when.items():
            if path not in self.reads or condition not in self.reads:
                raise ValueError(f"Stage {self.name!r}: {path!r} and its condition {condition!r} must be in reads")

    @functools.cached_property
    def _values(self) -> Callable[[Arch], tuple[Hashable, ...]]:
        """The declared fields' values of an architecture, in declaration order (one C-level getter)."""
        if not self.reads:
            return lambda arch: ()
        getter = operator.attrgetter(*self.reads)
        return (lambda arch: (getter(arch),)) if len(self.reads) == 1 else getter

    @functools.cached_property
    def _conditions(self) -> tuple[tuple[int, Callable[[Arch], Hashable], Hashable], ...]:
        """(index in `reads`, getter of the condition field, value) of every conditional field."""
        return tuple(
            (self.reads.index(path), operator.attrgetter(field), value)
            for path, (field, value) in self.reads_when.items()
        )

    def _unreadable(self, arch: Arch) -> tuple[int, ...]:
        """Indices in `reads` of the conditional fields whose condition fails for `arch`."""
        return tuple(index for index, getter, value in self._conditions if getter(arch) != value)

    def key(self, arch: Arch, *inputs: Hashable) -> MemoKey:
        """The key of this stage's value for `arch` and `inputs`."""
        values = self._values(arch)
        unreadable = self._unreadable(arch) if self._conditions else ()
        if unreadable:
            values = tuple(None if i in unreadable else value for i, value in enumerate(values))
        return MemoKey(self.name, values, inputs)

    def view(self, arch: Arch) -> Arch:
        """`arch` restricted to the fields this stage declares (see the module docstring)."""
        unreadable = self._unreadable(arch) if self._conditions else ()
        allowed = frozenset(path for i, path in enumerate(self.reads) if i not in unreadable)
        return cast(Arch, _View(arch, "", allowed, self.name))


class _View:
    """A read-only proxy of an architecture record that lets through only the allowed dotted fields;
    properties of the record are evaluated on the proxy, so they read through the same check."""

    __slots__ = ("_allowed", "_prefix", "_record", "_stage")

    def __init__(self, record: object, prefix: str, allowed: frozenset[str], stage: str) -> None:
        object.__setattr__(self, "_record", record)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)

    def __getattr__(self, name: str) -> Any:
        record = self._record
        attribute = getattr(type(record), name, None)
        if isinstance(attribute, property) and attribute.fget is not None:
            return attribute.fget(self)
        path = f"{self._prefix}{name}"
        value = getattr(record, name)
        if is_dataclass(value) and not isinstance(value, type):
            return _View(value, f"{path}.", self._allowed, self._stage)
        if path not in self._allowed:
            raise UndeclaredRead(f"stage {self._stage!r} reads {path!r}, which it does not declare")
        return value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{name}: an architecture view is read-only")


@functools.cache
def _arch_fields() -> frozenset[str]:
    """Every dotted field of an `Arch`."""
    hints = get_type_hints(Arch)
    paths: set[str] = set()
    for top in fields(Arch):
        kind = hints[top.name]
        if is_dataclass(kind):
            paths.update(f"{top.name}.{sub.name}" for sub in fields(kind))
        else:
            paths.add(top.name)
    return frozenset(paths)


_MISSING = object()


class Memo:
    """A bounded, thread-safe cache of values computed from one layer's work, keyed by `MemoKey`.

    `get(key, compute)` returns the value stored under `key`, or stores and returns `compute()`; beyond
    `limit` entries the least recently used one is dropped. Callers must not modify values (the simulator
    stores its numpy arrays read-only). Pickling keeps the limit and drops the entries.
    """

    __slots__ = ("_entries", "_lock", "limit")

    def __init__(self, limit: int = MEMO_ENTRIES) -> None:
        if limit < 1:
            raise ValueError(f"Memo: limit must be >= 1, got {limit}")
        self.limit = limit
        self._entries: dict[MemoKey, object] = {}
        self._lock = threading.Lock()

    def get(self, key: MemoKey, compute: Callable[[], T]) -> T:
        with self._lock:
            hit = self._entries.pop(key, _MISSING)
            if hit is not _MISSING:
                self._entries[key] = hit  # most recently used last
                return cast(T, hit)
        value = compute()  # outside the lock: two threads may both compute it, with the same result
        with self._lock:
            while len(self._entries) >= self.limit:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[MemoKey]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __getstate__(self) -> int:
        return self.limit

    def __setstate__(self, limit: int) -> None:
        self.limit = limit
        self._entries = {}
        self._lock = threading.Lock()
