"""Mock data: same schema as an asset (columns, dtypes, shape), synthetic values only.

A generated mock depends on the schema and the owner's public declarations alone, never on a
real value: numbers are drawn uniformly within the declared bounds (or from fixed
distributions), text is made from the column name, categories are the declared categories.
Two datasets with the same schema and declarations get the same mock, so a mock can tell
nothing about the data, not even by the values it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

MAX_MOCK_ROWS = 1000


def make_mock(value: Any, seed: int = 0, bounds: Mapping[str, Sequence[float]] | None = None) -> Any:
    """A synthetic stand-in for ``value`` with the same schema (at most 1000 rows); numeric
    columns named in ``bounds`` (the owner's public ``(lower, upper)``) are drawn within them."""
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    if isinstance(value, pd.DataFrame):
        n = min(len(value), MAX_MOCK_ROWS)
        cols = {c: _column(value[c].dtype, n, rng, str(c), bounds.get(str(c))) for c in value.columns}
        return pd.DataFrame(cols, index=pd.RangeIndex(n), columns=value.columns)
    if isinstance(value, pd.Series):
        n = min(len(value), MAX_MOCK_ROWS)
        return pd.Series(_column(value.dtype, n, rng, str(value.name), bounds.get(str(value.name))), name=value.name)
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
