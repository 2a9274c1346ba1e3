"""What values count against quotas: their memory when public, and for a private value a size
that follows from public facts only (its twin, scaled to a public or estimated row count), so a
quota's refusal never tells a private size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .codec import loaded_torch
from .twin import NO_TWIN, Failed

if TYPE_CHECKING:
    from .executor import Value


def nbytes(value: Any, depth: int = 0) -> int:
    """The memory a value holds (shallow for object columns), for quotas and caps."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, pd.Index):
        return int(value.memory_usage(deep=False))
    if isinstance(value, (pd.DataFrame, pd.Series)):
        usage = value.memory_usage(index=True, deep=False)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    held = getattr(value, "obj", None)  # a GroupBy or a window holds its whole frame
    if isinstance(held, (pd.DataFrame, pd.Series)) and depth < 4:
        return nbytes(held, depth + 1)
    torch = loaded_torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return int(value.numel() * value.element_size())
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (tuple, list)) and depth < 4:
        return 8 * len(value) + sum(nbytes(v, depth + 1) for v in value[:100_000])
    if isinstance(value, dict) and depth < 4:
        return 16 * len(value) + sum(
            nbytes(k, depth + 1) + nbytes(v, depth + 1) for k, v in list(value.items())[:100_000]
        )
    return 64


def _held(x: Any) -> Any:
    """The frame a GroupBy or a window holds, else None."""
    if isinstance(x, (pd.DataFrame, pd.Series, pd.Index, np.ndarray)):
        return None
    held = getattr(x, "obj", None)
    return held if isinstance(held, (pd.DataFrame, pd.Series)) else None


def rows(x: Any) -> int | None:
    """A value's first dimension (its rows), if it has one (a GroupBy's: its frame's)."""
    held = _held(x)
    shape = getattr(x if held is None else held, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) >= 1 else None
    except (TypeError, IndexError):
        return None


def _width(d: Any) -> int:
    """Bytes per element of a dtype: its item size when fixed, 8 (a reference) for text."""
    if isinstance(d, pd.CategoricalDtype):
        n = len(d.categories)
        return 1 if n < 128 else 2 if n < 32768 else 4
    if isinstance(d, np.dtype) and d.kind in "biufcmM":
        return d.itemsize
    return 8


def _width_nbytes(x: Any) -> int:
    """A frame's or array's bytes counting 8 per element of variable width (text): the part of
    its size that follows from its dtypes and shape, the same for a value and its twin per row."""
    if isinstance(x, pd.DataFrame):
        return (sum(_width(d) for d in x.dtypes[:100_000]) + 8) * len(x)
    if isinstance(x, (pd.Series, pd.Index)):
        index = 8 if isinstance(x, pd.Series) else 0  # its labels (a filter's are 8 bytes a row)
        return (_width(x.dtype) + index) * len(x)
    if isinstance(x, np.ndarray):
        return int(x.size) * (x.itemsize if x.dtype.kind in "biufcmM" else 8)
    held = _held(x)
    if held is not None:  # a GroupBy or a window: its frame, measured as a frame
        return _width_nbytes(held)
    return nbytes(x)


def charge(v: Value) -> int:
    """The bytes a value counts against quotas. A public value: its size. A private one: a size
    that follows from public facts only (its twin, scaled to its public or estimated row count),
    so a quota's refusal never tells a private size; the real value may not exceed ``cap(v)``."""
    if not v.private or v.twin is NO_TWIN:
        return nbytes(v.value)
    t = _width_nbytes(v.twin)
    rows_t = rows(v.twin)
    n = v.public_shape[0] if v.public_shape else v.rows_bound
    if rows_t is None or n is None:
        return 2 * t + 64
    return int(t / max(rows_t, 1) * n) + t + 64


def over_cap(v: Value) -> bool:
    """Whether a private value really holds more than its charge allows, with room for what its
    twin cannot foresee (joins and expansions). Row-stable values never pass it: they hold at
    most their asset's rows."""
    if v.stable is not None or not v.private or v.twin is NO_TWIN or isinstance(v.value, Failed):
        return False
    c = charge(v)
    return _width_nbytes(v.value) > max(2 * c, c + (1 << 20))


__all__ = ["nbytes", "rows", "charge", "over_cap"]
