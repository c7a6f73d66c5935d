"""Integer arithmetic shared by every layer of winosim: the one home of ceiling division.

Counts, tiles, cycles and bytes are integers; rounding up a quotient is the one rule they all need (tiles
per map, bytes per bits, cycles per transfer). `ceil_div` works on Python integers and, element-wise, on
numpy integer arrays and pandas integer columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import pandas as pd

Integers = TypeVar("Integers", bound=NDArray[np.integer])


@overload
def ceil_div(dividend: int, divisor: int) -> int: ...


@overload
def ceil_div(dividend: Integers, divisor: int | NDArray[np.integer]) -> Integers: ...


@overload
def ceil_div(dividend: int, divisor: Integers) -> Integers: ...


@overload
def ceil_div(dividend: pd.Series, divisor: int | pd.Series) -> pd.Series: ...


def ceil_div(dividend: object, divisor: object) -> object:
    """ceil(dividend / divisor) for non-negative integers (or integer arrays and columns, element-wise), exactly."""
    return -(-dividend // divisor)  # type: ignore[operator]
