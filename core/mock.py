"""Mock data: same schema as an asset (columns, dtypes, shape), synthetic values only.

A generated mock depends on the schema and the owner's public declarations alone (see
``core/public.py``), never on a real value: numbers are drawn uniformly within a declared range
(integers stay whole), dates within declared dates, categories from the declared list (or the
dtype's), text from a declared format (or the column name); with nothing declared, numbers come
from fixed distributions (unsigned ones stay non-negative). The generator has a fixed seed and
draws column by column in schema order, so what it draws follows from the schema (names, dtypes,
row count) and the declarations: two datasets with the same schema and declarations get the same
mock, so a mock can tell nothing about the data, not even by the values it lacks. (Without
declarations, mocks are the same as before declarations existed.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import public as _public

MAX_MOCK_ROWS = 1000


def make_mock(
    value: Any,
    seed: int = 0,
    bounds: Mapping[str, Sequence[float]] | None = None,
    public: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """A synthetic stand-in for ``value`` with the same schema (at most 1000 rows). ``public`` holds
    the owner's checked declarations in normal form (``{"weight": {"range": [0.5, 6.0]}}``);
    ``bounds`` (``{"weight": (0.5, 6.0)}``) is the older way to write numeric ranges."""
    decls: dict[str, Mapping[str, Any]] = {k: {"range": list(v)} for k, v in (bounds or {}).items()}
    decls.update(public or {})
    rng = np.random.default_rng(seed)  # a fixed seed, drawn column by column in schema order
    if isinstance(value, pd.DataFrame):
        n = min(len(value), MAX_MOCK_ROWS)
        cols = {c: _declared(value[c].dtype, n, rng, str(c), decls.get(str(c))) for c in value.columns}
        return pd.DataFrame(cols, index=pd.RangeIndex(n), columns=value.columns)
    if isinstance(value, pd.Series):
        n = min(len(value), MAX_MOCK_ROWS)
        return pd.Series(_declared(value.dtype, n, rng, str(value.name), decls.get(str(value.name))), name=value.name)
    if isinstance(value, np.ndarray):
        shape = (min(value.shape[0], MAX_MOCK_ROWS), *value.shape[1:]) if value.ndim else ()
        return _numbers(value.dtype, shape, rng)
    import torch

    if isinstance(value, torch.Tensor):
        shape = (min(value.shape[0], MAX_MOCK_ROWS), *value.shape[1:]) if value.ndim else ()
        np_dtype = np.float32 if value.dtype.is_floating_point else np.int64
        arr = _numbers(np.dtype(np_dtype) if value.dtype != torch.bool else np.dtype(bool), shape, rng)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(value.dtype)
    raise TypeError(f"no mock for {type(value).__name__}")


def _declared(dtype: Any, n: int, rng: np.random.Generator, name: str, decl: Mapping[str, Any] | None) -> Any:
    if decl:
        out = _from_declaration(dtype, n, rng, decl)
        if out is not None:
            return out
    return _column(dtype, n, rng, name, None)


def _from_declaration(dtype: Any, n: int, rng: np.random.Generator, decl: Mapping[str, Any]) -> Any:
    if "range" in decl:
        lo, hi = (float(v) for v in decl["range"])
        return _column(dtype, n, rng, "", (lo, hi))
    if "dates" in decl and pd.api.types.is_datetime64_any_dtype(dtype):
        start, end, days = _public.date_range(decl)
        if days:
            d0 = np.datetime64(start.date(), "D").astype(np.int64)
            d1 = np.datetime64(end.date(), "D").astype(np.int64)
            stamps = rng.integers(d0, d1 + 1, size=n).astype("datetime64[D]").astype("datetime64[ns]")
        else:
            s0 = np.datetime64(start, "s").astype(np.int64)
            s1 = np.datetime64(end, "s").astype(np.int64)
            stamps = rng.integers(s0, s1 + 1, size=n).astype("datetime64[s]").astype("datetime64[ns]")
        index = pd.DatetimeIndex(stamps)
        tz = getattr(dtype, "tz", None)
        if tz is not None:
            index = index.tz_localize("UTC").tz_convert(tz)
        return pd.Series(index).astype(dtype).array
    if "categories" in decl:
        cats = list(decl["categories"])
        picks = [cats[i] for i in rng.integers(0, len(cats), size=n)]
        if isinstance(dtype, pd.CategoricalDtype):
            return pd.Categorical(picks, dtype=dtype)
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
            return np.array(picks).astype(dtype)
        return pd.array(picks, dtype=dtype)
    if "format" in decl:
        _, _, width = _public.format_parts(str(decl["format"]))
        top = 10**width if width else 1_000_000
        return pd.array(_public.render(str(decl["format"]), rng.integers(0, top, size=n)), dtype=dtype)
    return None


def _within(dtype: np.dtype, n: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    if dtype.kind in "iu":
        return rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1, size=n).astype(dtype)
    return rng.uniform(lo, hi, size=n).round(3).clip(lo, hi).astype(dtype)


def _numbers(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator, scale: int = 1) -> np.ndarray:
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        high = min(100 * scale, int(np.iinfo(dtype).max))
        return rng.integers(0, high, size=shape).astype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * scale).round(3).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind == "M":
        start = np.datetime64("2020-01-01", "s").astype(np.int64)
        secs = start + rng.integers(0, 365 * 86400 * scale, size=shape)
        return secs.astype("datetime64[s]").astype(dtype)
    if dtype.kind == "m":
        return rng.integers(0, 86400 * scale, size=shape).astype("timedelta64[s]").astype(dtype)
    return np.array([f"x{i}" for i in range(int(np.prod(shape)))], dtype=object).reshape(shape)


def _column(dtype: Any, n: int, rng: np.random.Generator, name: str, declared: Sequence[float] | None) -> Any:
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        codes = rng.integers(0, max(len(cats), 1), size=n)
        return (
            pd.Categorical.from_codes(codes % max(len(cats), 1), dtype=dtype)
            if len(cats)
            else pd.Categorical([None] * n)
        )
    numeric = isinstance(dtype, np.dtype) and dtype.kind in "iuf"
    if numeric and declared is not None and float(declared[1]) >= float(declared[0]):
        lo, hi = float(declared[0]), float(declared[1])
        if dtype.kind == "f" or np.floor(hi) >= np.ceil(lo):
            return _within(dtype, n, rng, lo, hi)
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        return _numbers(dtype, (n,), rng)
    if pd.api.types.is_bool_dtype(dtype):
        return pd.array(rng.random(n) < 0.5, dtype=dtype)
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        np_dtype = np.dtype("int64" if pd.api.types.is_integer_dtype(dtype) else "float64")
        if declared is not None and float(declared[1]) >= float(declared[0]):
            return pd.array(_within(np_dtype, n, rng, float(declared[0]), float(declared[1])), dtype=dtype)
        return pd.array(_numbers(np_dtype, (n,), rng), dtype=dtype)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.Series(_numbers(np.dtype("datetime64[ns]"), (n,), rng)).astype(dtype).array
    stem = "".join(ch for ch in name if ch.isalnum() or ch == "_")[:20] or "value"
    words = [f"{stem}_{i:04d}" for i in rng.integers(0, 10_000, size=n)]
    return pd.array(words, dtype=dtype)
