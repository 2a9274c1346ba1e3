"""The public twin of a private value: the same computation run on the asset's mock.

Every op on private data runs twice: on the data and on its twin (the mock of each asset, or
the twin of an earlier result). The twin is public: it follows from the schema, the owner's
declarations and the plan alone, and it is exactly what ``ptr.mock`` computes on the client.
So the node describes a private value by its twin only (type, dtype, columns, name), raises an
op's error only when the twin raises it, and makes the real result take the twin's type and
dtypes; when it cannot, or when only the real computation fails, the real result is a private
``Failed`` marker that tells nobody anything until the owner releases it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .codec import loaded_torch


class _NoTwin:
    """The twin of a private value nobody can replay on mocks (a code run's result)."""

    def __repr__(self) -> str:
        return "NO_TWIN"


NO_TWIN: Any = _NoTwin()


@dataclass(frozen=True)
class Failed:
    """A private result that could not be computed on the real data although its twin was:
    stored like a value (so whether it failed stays private), released only as this failure."""

    op: str
    exception: str
    detail: str = ""

    def public_text(self) -> str:
        return (
            f"this value could not be computed on the real data: {self.op} raised {self.exception} there "
            "(it worked on the mock); the data owner's audit log has the details"
        )


def first_failure(values: list[Any]) -> Failed | None:
    for v in values:
        if isinstance(v, Failed):
            return v
    return None


def _dtype_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except TypeError:
        return False


def _same_dtype(real: Any, twin: Any) -> bool:
    return _dtype_eq(real.dtype, twin.dtype)


def conform(real: Any, twin: Any, type_key: Any, label: str) -> Any:
    """``real`` with the twin's type and dtypes, so neither depends on private values; a
    ``Failed`` when it cannot take them."""
    if isinstance(real, Failed) or twin is NO_TWIN:
        return real
    kr, kt = type_key(real), type_key(twin)
    try:
        if kr != kt or type(real) is not type(twin):
            return _scalar_as(real, twin, label)
        if isinstance(twin, np.generic) and real.dtype != twin.dtype:
            return twin.dtype.type(real)
        if isinstance(twin, (np.ndarray, pd.Series, pd.Index)):
            if getattr(real, "ndim", None) != getattr(twin, "ndim", None):
                return Failed(label, "a different number of dimensions than on the mock")
            return real if _same_dtype(real, twin) else real.astype(twin.dtype)
        if isinstance(twin, pd.DataFrame):
            if real.shape[1] != twin.shape[1] or not real.columns.equals(twin.columns):
                return real  # labels from the data: the pointer shows none, nothing to align
            # exact dtypes: every categorical prints as "category", whatever its categories
            differ = [i for i, (a, b) in enumerate(zip(real.dtypes, twin.dtypes)) if not _dtype_eq(a, b)]
            if not differ:
                return real
            out = real.copy(deep=False)
            for i in differ:
                out.isetitem(i, real.iloc[:, i].astype(twin.dtypes.iloc[i]))
            return out
        torch = loaded_torch()
        if torch is not None and isinstance(twin, torch.Tensor):
            if real.ndim != twin.ndim:
                return Failed(label, "a different number of dimensions than on the mock")
            return real if real.dtype == twin.dtype else real.to(twin.dtype)
    except Exception as e:  # the real values do not fit the twin's type (NaN into int, …)
        return Failed(label, f"a result that does not take the mock's type ({type(e).__name__})", str(e)[:2000])
    return real


_PY_SCALARS = (bool, int, float, complex, str)


def _scalar_as(real: Any, twin: Any, label: str) -> Any:
    """A scalar whose Python / numpy type differs from the twin's, converted to it."""
    if isinstance(twin, np.generic) and isinstance(real, (*_PY_SCALARS, np.generic)):
        return twin.dtype.type(real)
    if type(twin) in _PY_SCALARS and isinstance(real, (*_PY_SCALARS, np.generic)):
        return type(twin)(real.item() if isinstance(real, np.generic) else real)
    return Failed(label, f"a {type(real).__name__} where the mock gives a {type(twin).__name__}")


# labels pandas makes up itself (value_counts' "count", reset_index's "index", …): schema, not data
_LIBRARY_LABELS = frozenset(
    {
        "count",
        "proportion",
        "index",
        "level_0",
        "level_1",
        "variable",
        "value",
        "mean",
        "std",
        "min",
        "max",
        "25%",
        "50%",
        "75%",
        "sum",
        "size",
        "unique",
        "top",
        "freq",
        "median",
        "var",
    }
)


def public_labels(twins: list[Any], literals: list[Any]) -> set[Any]:
    """Labels the public schema gives: the inputs' column labels and names, the plan's own
    literals, and the names pandas makes up itself."""
    labels: set[Any] = set(_LIBRARY_LABELS) | {None, 0}
    for t in twins:
        if isinstance(t, pd.DataFrame):
            labels.update(_hashable(c) for c in t.columns[:100_000])
        elif isinstance(t, (pd.Series, pd.Index)):
            labels.add(_hashable(t.name))
    stack = list(literals)
    while stack and len(labels) < 1_000_000:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x[:100_000])
        elif isinstance(x, dict):
            stack.extend(list(x.keys())[:100_000])
            stack.extend(list(x.values())[:100_000])
        elif isinstance(x, (str, int, float)) and not isinstance(x, bool):  # True == 1 would pass column 1
            labels.add(x)
    return labels


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return repr(x)


def labels_public(twin: Any, allowed: set[Any]) -> bool:
    """Whether a twin's labels (a frame's columns, a series' name) all come from the schema:
    otherwise they come from values (``set_index(...).T``), and the pointer shows none."""
    if isinstance(twin, pd.DataFrame):
        cols = twin.columns
        if isinstance(cols, pd.MultiIndex):
            return all(all(_hashable(p) in allowed for p in c) for c in cols[:100_000]) and len(cols) <= 100_000
        return len(cols) <= 100_000 and all(_hashable(c) in allowed for c in cols)
    if isinstance(twin, (pd.Series, pd.Index)):
        return _hashable(twin.name) in allowed
    return True


__all__ = ["NO_TWIN", "Failed", "conform", "first_failure", "public_labels", "labels_public"]
