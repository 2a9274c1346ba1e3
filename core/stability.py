"""Per-subject stability: which private values a DP query may run on.

DP's sensitivity holds only if each row of the queried value comes from at most one row of the
asset, and from nothing else: a dataset asset, or row-wise transformations of it (filters with
a row-wise mask, column selection, elementwise maps and comparisons with public scalars,
clamping). A value derived from an aggregate, a positional lookup, a repetition of rows, a
broadcast of one row, a join or a reshaping is not stable, and DP queries refuse it. These are
the stability maps of OpenDP's row-by-row transformations (``make_row_by_row``, ``then_clamp``,
``make_filter``…): distance in, distance out, one for one.

``stable`` is the asset key (``"dataset/asset"``) the value's rows map into, or None.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pandas as pd

from . import allowlist as al
from .codec import loaded_torch

# methods of a Series / DataFrame that map each row to one row (or drop it), given public scalars
_ROW_METHODS = frozenset(
    "abs round clip isna isnull notna notnull astype fillna add sub mul div truediv floordiv mod pow "
    "radd rsub rmul rdiv eq ne lt le gt ge isin where mask between dropna copy to_frame "
    "sort_values to_numpy".split()
)
_STR_METHODS = frozenset(
    "lower upper strip lstrip rstrip len contains startswith endswith replace slice get zfill pad center "
    "isdigit isalpha isnumeric isspace islower isupper title capitalize count find".split()
)
_DT = frozenset(al._DT)
_TENSOR_ROW = frozenset(al._TORCH_ELEMENTWISE.split()) - {
    "softmax",
    "log_softmax",
    "cumsum",
    "cumprod",
    "where",
} | frozenset("float double half int long bool contiguous detach clone to".split())
_NUMPY_ROW = (
    frozenset(f"numpy.{n}" for n in al.NUMPY_UFUNCS)
    | frozenset(f"numpy.{n}" for n in "abs clip round around nan_to_num".split())
    | frozenset(f"torch.{n}" for n in _TENSOR_ROW)
)


def _public_scalar(x: Any) -> bool:
    return x is None or isinstance(x, (bool, int, float, complex, str, np.generic, pd.Timestamp, pd.Timedelta))


def _public_arg(x: Any, depth: int = 0) -> bool:
    """A public argument that cannot broadcast rows: scalars, dtypes, and short literal lists or
    maps of scalars (``isin([...])``, ``rename({...})``, ``astype({...})``)."""
    if _public_scalar(x) or isinstance(x, (np.dtype, type, slice)):
        return True
    torch = loaded_torch()
    if torch is not None and isinstance(x, torch.dtype):
        return True
    if isinstance(x, (list, tuple)) and depth < 2 and len(x) <= 10_000:
        return all(_public_arg(v, depth + 1) for v in x)
    if isinstance(x, dict) and depth < 2 and len(x) <= 10_000:
        return all(_public_arg(k, depth + 1) and _public_arg(v, depth + 1) for k, v in x.items())
    return False


def _column_key(key: Any, frame: Any) -> bool:
    if not isinstance(frame, pd.DataFrame):
        return False
    if isinstance(key, str):
        return True
    return isinstance(key, list) and all(isinstance(k, str) for k in key) and len(set(key)) == len(key)


def _row_slice(key: Any) -> bool:
    """``x[:, 3]``, ``x[:, 1:4]``: every row, some of its entries."""
    return (
        isinstance(key, tuple)
        and len(key) >= 2
        and key[0] == slice(None)
        and all(isinstance(k, (int, slice)) and not isinstance(k, bool) for k in key[1:])
    )


def source_of(stable: str) -> str:
    """The asset key of a stability mark (``"dataset/asset"`` or ``"dataset/asset#rows"``)."""
    return stable.split("#", 1)[0]


def _filtered(stable: str) -> str:
    """A new mark for a subset of the rows: two values combine row by row only when they hold
    the same rows (pandas would align two different subsets, or refuse to)."""
    return f"{source_of(stable)}#{secrets.token_hex(6)}"


def stable_source(
    kind: str,
    label: str,
    operands: list[Any],
    values: list[Any],
    nested_private: bool,
    kwargs: dict[str, Any] | None = None,
) -> str | None:
    """The stability mark of a private result: the asset its rows map into one for one, with
    which of its rows it holds (``"dataset/asset#token"`` after a filter); None if not stable.

    ``operands`` are the op's argument values, the target first, then keyword values (the twins';
    their types are the real ones'); ``values`` holds, for each, the stored ``Value`` it is (None
    for a plan literal); ``nested_private`` says a private value sits inside a list or map."""
    if nested_private:
        return None
    if (
        kind == "op"
        and len(values) == 2
        and values[1] is None
        and values[0] is not None
        and isinstance(operands[1], (int, float, bool))
        and label in al.ELEMENTWISE_OPERATORS
        and label != "pow"
        and isinstance(operands[0], np.ndarray)
        and operands[0].dtype.kind in "biuf"
    ):
        return values[0].stable  # the common case, ptr + 1: one value and a public number
    if _may_fail_on_values(label, operands):
        return None  # whether it fails would depend on the data, and a DP refusal would say so
    private = [v for v in values if v is not None and v.private]
    sources = {v.stable for v in private}
    if not private or None in sources or len(sources) != 1:
        return None
    source = next(iter(sources))
    target = values[0] if values else None
    for v, x in zip(values[1:], operands[1:]):
        if (v is None or not v.private) and not _public_arg(x):
            return None  # a public array or frame could broadcast one row over many
    method = label.split(".", 1)[1] if "." in label else label
    key = label.split(".", 1)[0] if "." in label else ""
    if method == "isin" and any(v is not None and v.private for v in values[1:]):
        return None  # membership in a private set: one person's value could select every row
    if kwargs and _ROW_COUPLING & set(kwargs):
        return None  # limit=, ignore_index=, method=: one row's value reaches others, or labels renumber
    if kind == "op":
        if label in al.ELEMENTWISE_OPERATORS:
            return source if _aligned(values) else None
        if label == "getitem" and target is not None and target.stable == source and len(operands) == 2:
            k, kv = operands[1], values[1]
            if kv is None and (_column_key(k, operands[0]) or _row_slice(k)):
                return source
            if kv is not None and kv.private and kv.stable == source and _boolean_rows(k, operands[0]):
                return _filtered(source)  # a filter by a row-wise mask of the same rows
        return None
    if target is None or target.stable != source:
        return None
    if method == "dropna":  # rows only (axis=1 would drop the columns the data has gaps in)
        axis = (kwargs or {}).get("axis", 0)
        return _filtered(source) if len(values) == 1 + len(kwargs or {}) and axis in (0, "index", "rows") else None
    if method == "sort_values":  # the same rows in another order: positions no longer line up
        return _filtered(source)
    if kind in ("method", "getattr") and key in ("Series", "DataFrame") and method in _ROW_METHODS:
        return source if _aligned(values) else None
    if kind == "method" and method == "rename" and _renames_no_rows(key, operands):
        return source  # the series' name or the frame's columns: row labels (subjects) stay
    if kind == "getattr" and key == "Series" and method in ("str", "dt"):
        return source
    if key == "StringMethods" and method in _STR_METHODS:
        return source
    if key == "DatetimeProperties" and method in _DT:
        return source
    if key in ("ndarray", "Tensor") and (method in _TENSOR_ROW or method in ("clip", "round", "abs", "astype", "copy")):
        return source if len(values) == 1 or all(v is None for v in values[1:]) else None
    if kind == "function" and label in _NUMPY_ROW:
        return source if _aligned(values) else None
    return None


def _aligned(values: list[Any]) -> bool:
    """Several private operands combine row by row only when they share their rows' index (a
    frame and its own columns): pandas aligns labels, numpy broadcasts positions. (Decided on the
    twins: the real values have their types, or failed.)"""
    private = [v for v in values if v is not None and v.private]
    if len(private) <= 1:
        return True
    kinds = {type(v.public_view) for v in private}
    # a frame and a series align the series' row labels with the frame's columns: refused
    return kinds <= {pd.Series} or kinds <= {pd.DataFrame}


# keyword arguments that make one row's value reach other rows, or renumber the rows
_ROW_COUPLING = frozenset({"limit", "ignore_index", "method", "level", "limit_direction", "limit_area"})


def _renames_no_rows(key: str, operands: list[Any]) -> bool:
    """``s.rename("grams")`` or ``df.rename(columns={...})``: never the row labels, which are how
    DP tells one subject's rows from another's (``rename({a: b, b: a})`` would move a value)."""
    if key == "Series":
        return len(operands) == 2 and isinstance(operands[1], (str, int)) and not isinstance(operands[1], bool)
    return False  # a frame's rename may name index= or a mapper for both: the positional form is refused


_FLOAT_OR_TEXT = ("f", "U", "S")


def _dtype_kind(x: Any) -> str | None:
    try:
        d = np.dtype(x) if not isinstance(x, str) or x not in ("string", "str", "category") else None
    except TypeError:
        d = None
    if d is not None:
        return d.kind
    return {"string": "U", "str": "U", "category": "category"}.get(x) if isinstance(x, str) else None


def _formats_as_a_column(d: Any) -> bool:
    """Dtypes whose text pandas formats for the column at once (``2020-01-01`` for all rows, or
    ``2020-01-01 00:00:00`` for all once one row has a time): one row changes every row."""
    return (isinstance(d, np.dtype) and d.kind in "mM") or isinstance(
        d, (pd.DatetimeTZDtype, pd.PeriodDtype, pd.IntervalDtype)
    )


def _integer(d: Any) -> bool:
    if isinstance(d, np.dtype):
        return d.kind in "iu"
    fp = getattr(d, "is_floating_point", None)  # a torch dtype
    return fp is not None and not fp and not d.is_complex


def _may_fail_on_values(label: str, operands: list[Any]) -> bool:
    """Whether a row-wise op can fail for some values and not others (so a value derived with it
    may have failed on the data alone): casts to integers or categories, integer powers, and any
    op on object or categorical columns that can put new values in (fillna, where, replace)."""
    method = label.split(".", 1)[1] if "." in label else label
    target = operands[0] if operands else None
    dtypes = (
        []
        if target is None
        else list(target.dtypes)
        if isinstance(target, pd.DataFrame)
        else [getattr(target, "dtype", None)]
    )
    if any(isinstance(d, np.dtype) and d.kind == "O" for d in dtypes):
        return True  # Python objects: any op may meet a value of the wrong type
    if method in ("to_numpy", "numpy") and len(operands) > 1:
        return True  # to_numpy(dtype=…, na_value=…): a cast, with the cast's failures
    if method in ("floor", "ceil", "round", "normalize") and label.startswith("DatetimeProperties."):
        return True  # near the ends of the datetime range these raise, for some values only
    if method in ("floordiv", "mod", "rfloordiv", "rmod", "floor_divide", "remainder", "fmod") and any(
        _integer(d) and not isinstance(d, np.dtype) for d in dtypes if d is not None
    ):
        return True  # torch raises on an integer division by zero
    if method in ("astype", "to"):
        wanted = operands[1] if len(operands) > 1 else None
        targets = list(wanted.values()) if isinstance(wanted, dict) else [wanted]
        if not all(_dtype_kind(t) in _FLOAT_OR_TEXT for t in targets):
            return True
        if any(_dtype_kind(t) in ("U", "S") for t in targets) and any(_formats_as_a_column(d) for d in dtypes):
            return True  # datetimes and durations as text share one format for the whole column
        # text to a number fails on the first value that is not one
        numeric = [t for t in targets if _dtype_kind(t) == "f"]
        return bool(numeric) and any(
            not (isinstance(d, np.dtype) and d.kind in "biufcmM") for d in dtypes if d is not None
        )
    if method in ("pow", "rpow", "power") and any(_integer(d) for d in dtypes if d is not None):
        return True  # an integer to a negative integer power raises
    if method in ("fillna", "where", "mask", "replace", "clip") and any(
        isinstance(d, pd.CategoricalDtype) for d in dtypes
    ):
        return True  # a value outside the categories raises only where one is needed
    return False


def _boolean_rows(mask: Any, target: Any) -> bool:
    if isinstance(mask, pd.Series):
        return mask.dtype == bool and isinstance(target, (pd.Series, pd.DataFrame))
    return False


__all__ = ["stable_source", "source_of"]
