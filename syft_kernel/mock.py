"""Mock data: same schema as an asset (columns, dtypes, shape), synthetic values only.

A generated mock never copies a value from the real data: numbers are drawn from fixed
distributions, text is made from the column name, categories are the declared categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAX_MOCK_ROWS = 1000


def make_mock(value: Any, seed: int = 0) -> Any:
    """A synthetic stand-in for ``value`` with the same schema (at most 1000 rows).

    Values that happen to equal a real value are drawn again (booleans and declared categories
    excepted: they are schema), so no real value appears in a generated mock.
    """
    rng = np.random.default_rng(seed)
    if isinstance(value, pd.DataFrame):
        n = min(len(value), MAX_MOCK_ROWS)
        cols = {c: _column(value[c], n, rng, str(c)) for c in value.columns}
        return pd.DataFrame(cols, index=pd.RangeIndex(n), columns=value.columns)
    if isinstance(value, pd.Series):
        n = min(len(value), MAX_MOCK_ROWS)
        return pd.Series(_column(value, n, rng, str(value.name)), name=value.name)
    if isinstance(value, np.ndarray):
        shape = (min(value.shape[0], MAX_MOCK_ROWS), *value.shape[1:]) if value.ndim else ()
        return _avoid(_numbers(value.dtype, shape, rng), np.asarray(value), rng)
    import torch

    if isinstance(value, torch.Tensor):
        shape = (min(value.shape[0], MAX_MOCK_ROWS), *value.shape[1:]) if value.ndim else ()
        np_dtype = np.float32 if value.dtype.is_floating_point else np.int64
        arr = _numbers(np.dtype(np_dtype) if value.dtype != torch.bool else np.dtype(bool), shape, rng)
        real = value.detach().cpu().to(torch.float64 if value.dtype.is_floating_point else torch.int64).numpy()
        arr = _avoid(arr, real, rng)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(value.dtype)
    raise TypeError(f"no mock for {type(value).__name__}")


def _avoid(mock: np.ndarray, real: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Redraw mock values that equal a real value, widening the range each time."""
    if mock.dtype.kind == "b" or mock.size == 0:
        return mock
    mock = np.array(mock)
    real_values = np.unique(np.asarray(real).ravel())
    for attempt in range(1, 40):
        clash = np.isin(mock, real_values)
        if not clash.any():
            return mock
        mock[clash] = _numbers(mock.dtype, (int(clash.sum()),), rng, scale=2**attempt)
    raise ValueError("could not draw mock values distinct from the real ones; pass mock= explicitly")


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


def _column(s: pd.Series, n: int, rng: np.random.Generator, name: str) -> Any:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        codes = rng.integers(0, max(len(cats), 1), size=n)
        return pd.Categorical.from_codes(codes % max(len(cats), 1), dtype=dtype) if len(cats) else pd.Categorical([None] * n)
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        return _avoid(_numbers(dtype, (n,), rng), s.to_numpy(), rng)
    if pd.api.types.is_bool_dtype(dtype):
        return pd.array(rng.random(n) < 0.5, dtype=dtype)
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return pd.array(_numbers(np.dtype("int64" if pd.api.types.is_integer_dtype(dtype) else "float64"), (n,), rng), dtype=dtype)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.Series(_numbers(np.dtype("datetime64[ns]"), (n,), rng)).astype(dtype).array
    stem = "".join(ch for ch in name if ch.isalnum() or ch == "_")[:20] or "value"
    real = set(s.dropna().astype(str))
    words = [f"{stem}_{i:04d}" for i in rng.integers(0, 10_000, size=n)]
    words = [w if w not in real else f"{w}_{j}_mock" for j, w in enumerate(words)]
    return pd.array(words, dtype=dtype)
