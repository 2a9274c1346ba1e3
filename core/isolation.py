"""Row-local failures: a row-stable op that fails on the data is done again on halves of its
rows, and a row that fails alone takes its dtype's default (0, False, missing). One person's
values then change their own row only, never whether the whole value exists, which a DP query
would otherwise tell. Also the dtype rule that keeps gaps from changing a column's type."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from . import allowlist as al
from .codec import loaded_torch
from .sizes import rows as _rows
from .twin import Failed, conform

log = logging.getLogger(__name__)

_ISOLATE_CALLS = 4096  # bisection steps before the rest is tried row by row


_ACCESSORS = {"StringMethods": "str", "DatetimeProperties": "dt"}


def _rowed(x: Any) -> Any:
    """The value whose rows an operand has: itself, or the series under a ``.str`` / ``.dt``."""
    return x._parent if type(x).__name__ in _ACCESSORS else x


def _row_count(x: Any) -> int | None:
    x = _rowed(x)
    if isinstance(x, (pd.Series, pd.DataFrame, np.ndarray)) or (
        loaded_torch() is not None and isinstance(x, loaded_torch().Tensor)
    ):
        return _rows(x)
    return None


def _take(x: Any, a: int, b: int) -> Any:
    accessor = _ACCESSORS.get(type(x).__name__)
    if accessor is not None:
        return getattr(x._parent.iloc[a:b], accessor)
    return x.iloc[a:b] if isinstance(x, (pd.Series, pd.DataFrame)) else x[a:b]


def _defaults(twin: Any, index: Any) -> Any:
    """Rows of the twin's type, one per label of ``index`` (or ``index`` rows of an array),
    holding each dtype's default (0, False, missing): what rows the op fails on become."""

    def default(d: Any) -> Any:
        if isinstance(d, np.dtype) and d.kind in "iufc":
            return 0
        if isinstance(d, np.dtype) and d.kind == "b":
            return False
        if isinstance(d, np.dtype) and d.kind in "mM":
            return pd.NaT
        return None

    if isinstance(twin, pd.Series):
        return pd.Series([default(twin.dtype)] * len(index), index=index, name=twin.name, dtype=twin.dtype)
    if isinstance(twin, pd.DataFrame):
        return pd.DataFrame(
            {c: pd.Series([default(d)] * len(index), index=index, dtype=d) for c, d in twin.dtypes.items()},
            columns=twin.columns,
        )
    n = index if isinstance(index, int) else len(index)
    torch = loaded_torch()
    if torch is not None and isinstance(twin, torch.Tensor):
        return torch.zeros((n, *twin.shape[1:]), dtype=twin.dtype)
    return np.zeros((n, *twin.shape[1:]), dtype=twin.dtype)


def all_defaults(real: Any, twin_out: Any) -> Any:
    """Every row at its default: a row-stable op whose failure could not be narrowed to rows
    still gives a value, so whether it failed never shows (in DP or anywhere)."""
    for v, x in zip(real.values, real.operands):
        if v is not None and v.private:
            rows = _rowed(x)
            index = rows.index if isinstance(rows, (pd.Series, pd.DataFrame)) else _rows(rows)
            if index is not None and isinstance(twin_out, (pd.Series, pd.DataFrame)) and isinstance(index, int):
                index = pd.RangeIndex(index)
            return _defaults(twin_out, index) if index is not None else None
    return None


def _concat(pieces: list[Any], twin: Any) -> Any:
    if isinstance(twin, (pd.Series, pd.DataFrame)):
        return pd.concat(pieces) if pieces else twin.iloc[:0]
    torch = loaded_torch()
    if torch is not None and isinstance(twin, torch.Tensor):
        return torch.cat(pieces) if pieces else twin[:0]
    return np.concatenate(pieces) if pieces else twin[:0]


def isolate_rows(
    kind: str,
    name: str,
    label: str,
    rule: al.Rule,
    real: Any,
    twin_out: Any,
    invoke: Callable[..., Any],
    type_key: Callable[[Any], str],
) -> Any:
    """A row-stable op that failed on the data, done again on parts of its rows (halving the
    parts that fail, then row by row): rows that fail alone take ``_defaults``. None when the
    op is not made of rows (the twin's result has none)."""
    if _row_count(twin_out) is None:
        return None
    ops = real.operands
    rows = [(i, _row_count(x)) for i, x in enumerate(ops) if real.values[i] is not None and real.values[i].private]
    counts = {n for _, n in rows}
    if not rows or len(counts) != 1 or None in counts:
        return None
    n = counts.pop()
    target = ops[rows[0][0]]
    private_at = {i for i, _ in rows}
    n_args = len(real.args)
    names = list(real.kwargs)
    calls = 0

    def attempt(a: int, b: int) -> Any:
        part = [_take(x, a, b) if i in private_at else x for i, x in enumerate(ops)]
        out = invoke(kind, name, label, rule, part[:n_args], dict(zip(names, part[n_args:])))
        if MAY_LEAVE_GAPS.get(label.split(".", 1)[-1]):
            out = widen(out)
        out = conform(out, twin_out, type_key, label)
        if isinstance(out, Failed):
            raise ValueError("does not conform")
        return out

    pieces: list[Any] = []
    work = [(0, n)]
    while work:
        a, b = work.pop()
        if a >= b:
            continue
        calls += 1
        try:
            pieces.append(attempt(a, b))
            continue
        except Exception:
            pass
        if b - a == 1:
            rowed = _rowed(target)
            where = rowed.index[a : a + 1] if isinstance(rowed, (pd.Series, pd.DataFrame)) else 1
            pieces.append(_defaults(twin_out, where))
        elif calls > _ISOLATE_CALLS:
            work.extend((i, i + 1) for i in range(b - 1, a - 1, -1))
        else:
            mid = (a + b) // 2
            work.extend(((mid, b), (a, mid)))  # the first half is popped first: rows stay in order
    try:
        return _concat(pieces, twin_out)
    except Exception:
        return None


# ops whose result may hold missing or infinite values in an int / bool column, by the values
MAY_LEAVE_GAPS = {name: True for name in "where mask floordiv rfloordiv mod rmod".split()}


def widen(x: Any) -> Any:
    """int and bool columns as float64 (a frame's, a series'); others as they are."""

    def wide(d: Any) -> bool:
        return (
            isinstance(d, np.dtype)
            and d.kind in "biu"
            or str(d) in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "boolean")
        )

    try:
        if isinstance(x, pd.Series):
            return x.astype(np.float64) if wide(x.dtype) or x.dtype == object and _all_boolish(x) else x
        if isinstance(x, pd.DataFrame):
            cols = {c: np.float64 for c, d in zip(x.columns, x.dtypes) if wide(d)}
            return x.astype(cols) if cols and x.columns.is_unique else x
    except (TypeError, ValueError):
        return x
    return x


def _all_boolish(x: pd.Series) -> bool:
    """An object column of booleans and gaps (bool.where(...) gives one)."""
    return len(x) <= 10_000_000 and bool(x.map(lambda v: v is None or isinstance(v, (bool, np.bool_, float))).all())


__all__ = ["isolate_rows", "all_defaults", "widen", "MAY_LEAVE_GAPS"]
