"""The owner's public declarations about a dataset's columns: ranges, dates, categories, text formats.

An owner declares at upload what anyone may know about a column (``public={"weight": (0.5, 6.0),
"sex": ["F", "M"], "day": ("2026-02-01", "2026-02-28"), "mother_id": "M-{:06d}"}``). They are
public by definition: shown with the dataset, used to make its mock, and a numeric range is
also the column's DP bounds (``bounds=`` is another way to write the same numeric ranges).

A key is a column name (a Series asset's name counts) and applies to every asset that has that
column. Declarations are checked against the schema (dtypes), never against the values.

Each declaration travels and is stored in one normal form, a map with one key:

- ``{"range": [lower, upper]}``: numbers (integers or floats), ``lower < upper``;
- ``{"dates": [lower, upper]}``: ISO 8601 strings, ``lower <= upper``; a bound given as a date
  alone (``"2026-02-28"``) covers that whole day;
- ``{"categories": [...]}``: the values the column takes, distinct;
- ``{"format": "M-{:06d}"}``: text made of fixed characters around one whole number
  (``{}``, ``{:d}`` or ``{:0Nd}``, N at most 18).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArgument

MAX_CATEGORIES = 10_000
MAX_TEXT = 1000
FORMS = ("range", "dates", "categories", "format")
HOW = (
    "declare a range (lower, upper) of numbers or of ISO dates, a list of categories, or a text format like 'ID-{:06d}'"
)
_FIRST_DATE, _LAST_DATE = _dt.datetime(1677, 9, 22), _dt.datetime(2262, 4, 10)  # within datetime64[ns]
_FORMAT = re.compile(r"\A([^{}]{0,100})\{(?::(?:0([1-9]|1[0-8]))?d)?\}([^{}]{0,100})\Z")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalize(public: Mapping[str, Any] | None, bounds: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The owner's declarations in their normal form (client side, before they travel):
    a tuple is a range (of numbers, or of dates as ISO strings or Timestamps), a list is the
    categories, a string is a text format; ``bounds`` adds numeric ranges (the same notion)."""
    out: dict[str, dict[str, Any]] = {}
    for key, decl in (public or {}).items():
        out[str(key)] = _normal(str(key), decl)
    for key, b in (bounds or {}).items():
        rng = _normal(str(key), tuple(b) if isinstance(b, (list, tuple)) else b)
        if "range" not in rng:
            raise InvalidArgument(
                f"bounds[{str(key)!r}] is a numeric (lower, upper) pair; declare other facts in public"
            )
        have = out.get(str(key))
        if have is not None and have != rng:
            raise InvalidArgument(
                f"bounds[{str(key)!r}] = {tuple(b)!r} and public[{str(key)!r}] disagree: declare the range once"
            )
        out[str(key)] = rng
    return out


def _normal(key: str, decl: Any) -> dict[str, Any]:
    if isinstance(decl, Mapping):
        return dict(decl)  # a normal form already (checked by check())
    if isinstance(decl, tuple):
        if len(decl) != 2:
            raise InvalidArgument(f"public[{key!r}]: a range is a pair (lower, upper), got {len(decl)} values")
        if all(_is_time(v) for v in decl):
            return {"dates": [_iso(v) for v in decl]}
        return {"range": [_plain(v) for v in decl]}
    if isinstance(decl, list):
        return {"categories": [_plain(v) for v in decl]}
    if isinstance(decl, str):
        return {"format": decl}
    raise InvalidArgument(f"public[{key!r}] is {type(decl).__name__}: {HOW}")


def _is_time(v: Any) -> bool:
    if isinstance(v, str):
        return _parse(v) is not None
    return isinstance(v, (_dt.date, _dt.datetime)) or type(v).__name__ in ("Timestamp", "datetime64")


def _iso(v: Any) -> str:
    if isinstance(v, str):
        return v
    if type(v).__name__ == "datetime64":
        return str(v)
    if isinstance(v, _dt.datetime) or not isinstance(v, _dt.date):
        return str(v.isoformat())
    return v.isoformat()


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers (what msgpack carries)."""
    item = getattr(v, "item", None)
    return item() if callable(item) and type(v).__module__ == "numpy" else v


def _parse(text: str) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text)
        return t.replace(tzinfo=None) if t.tzinfo is None else t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):  # not ISO, or out of range once in UTC
        return None


def date_range(decl: Mapping[str, Any]) -> tuple[_dt.datetime, _dt.datetime, bool]:
    """A checked ``dates`` declaration as naive UTC datetimes (lower, upper inclusive), and whether
    both were dates alone (then the column's values are whole days: the upper day is included)."""
    lo_s, hi_s = decl["dates"]
    lo, hi = _parse(lo_s), _parse(hi_s)
    assert lo is not None and hi is not None
    days = bool(_DATE_ONLY.match(lo_s) and _DATE_ONLY.match(hi_s))
    return lo, hi, days


def format_parts(fmt: str) -> tuple[str, str, int]:
    """A checked text format as (prefix, suffix, zero-padded width; 0: no padding)."""
    m = _FORMAT.match(fmt)
    assert m is not None
    return m.group(1), m.group(3), int(m.group(2) or 0)


def render(fmt: str, numbers: Any) -> list[str]:
    """The format filled with each number (zero-padded to its width)."""
    prefix, suffix, width = format_parts(fmt)
    return [f"{prefix}{int(n):0{width}d}{suffix}" for n in numbers]


def _dtype_kind(dtype: Any) -> str:
    """'i', 'u', 'f', 'b', 'M' (dates), 'c' (categorical), 'U' (text), 'O' (other)."""
    import numpy as np
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "c"
    if pd.api.types.is_bool_dtype(dtype):
        return "b"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "M"
    if pd.api.types.is_integer_dtype(dtype):
        return "u" if pd.api.types.is_unsigned_integer_dtype(dtype) else "i"
    if pd.api.types.is_float_dtype(dtype):
        return "f"
    if pd.api.types.is_string_dtype(dtype) or (isinstance(dtype, np.dtype) and dtype.kind in "OUS"):
        return "U"
    return "O"


_KIND_WORDS = {
    "i": "integers",
    "u": "non-negative integers",
    "f": "numbers",
    "b": "true/false",
    "M": "dates",
    "c": "categories",
    "U": "text",
    "O": "values",
}


def columns_of(assets: Mapping[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """Each column name (a Series's name counts) with the (asset, dtype) pairs that have it."""
    import pandas as pd

    out: dict[str, list[tuple[str, Any]]] = {}
    for aname, value in assets.items():
        if isinstance(value, pd.DataFrame):
            if not value.columns.is_unique:
                raise InvalidArgument(f"asset {aname!r} has repeated column names: give each column its own name")
            for c in value.columns:
                out.setdefault(str(c), []).append((aname, value[c].dtype))
        elif isinstance(value, pd.Series) and value.name is not None:
            out.setdefault(str(value.name), []).append((aname, value.dtype))
    return out


def check(public: Any, columns: Mapping[str, list[tuple[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Declarations in normal form, checked against the schema (``columns_of(assets)``): each key
    a column, each form one that column's dtype can take. Returns them checked and canonical;
    raises ``InvalidArgument`` that says what to declare instead."""
    if not isinstance(public, Mapping):
        raise InvalidArgument(f"public maps column names to declarations: {HOW}")
    out: dict[str, dict[str, Any]] = {}
    for key, decl in public.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_TEXT:
            raise InvalidArgument("public maps column names (strings) to declarations")
        if key not in columns:
            known = ", ".join(sorted(columns)) or "none (arrays and tensors take no declarations)"
            raise InvalidArgument(f"public declares {key!r}, which is not a column of any asset; the columns: {known}")
        if not isinstance(decl, Mapping) or len(decl) != 1 or next(iter(decl)) not in FORMS:
            raise InvalidArgument(f"public[{key!r}] is not a declaration: {HOW}")
        form, arg = next(iter(decl.items()))
        for aname, dtype in columns[key]:
            kind = _dtype_kind(dtype)
            out[key] = _check_one(key, aname, kind, dtype, str(form), arg)
    return out


def _where(key: str, aname: str, kind: str) -> str:
    return f"column {key!r} of {aname!r} holds {_KIND_WORDS[kind]}"


def _check_one(key: str, aname: str, kind: str, dtype: Any, form: str, arg: Any) -> dict[str, Any]:
    where = _where(key, aname, kind)
    if form == "range":
        if kind not in "iuf":
            hint = {
                "M": "give dates as ISO strings, e.g. ('2026-02-01', '2026-02-28')",
                "U": "declare its categories as a list, e.g. ['F', 'M'], or a format like 'ID-{:06d}'",
                "c": "declare the categories as a list",
            }.get(kind, "a range is for numeric columns")
            raise InvalidArgument(f"public[{key!r}] is a numeric range, but {where}: {hint}")
        if not isinstance(arg, list) or len(arg) != 2 or not all(type(v) in (int, float) for v in arg):
            raise InvalidArgument(f"public[{key!r}]: a range is a pair of numbers (lower, upper)")
        lo, hi = arg
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidArgument(
                f"public[{key!r}] = {tuple(arg)!r}: the bounds must be finite numbers (no NaN or inf)"
            )
        if not lo < hi:
            raise InvalidArgument(f"public[{key!r}] = {tuple(arg)!r}: lower must be below upper; swap them?")
        if kind in "iu" and math.floor(hi) < math.ceil(lo):
            raise InvalidArgument(f"public[{key!r}] = {tuple(arg)!r} holds no whole number, but {where}")
        if kind == "u" and lo < 0:
            raise InvalidArgument(f"public[{key!r}] = {tuple(arg)!r} goes below 0, but {where}: start it at 0")
        return {"range": [lo, hi]}
    if form == "dates":
        if kind != "M":
            raise InvalidArgument(f"public[{key!r}] is a range of dates, but {where}: {HOW}")
        if not isinstance(arg, list) or len(arg) != 2 or not all(isinstance(v, str) and len(v) <= 64 for v in arg):
            raise InvalidArgument(
                f"public[{key!r}]: a date range is a pair of ISO dates, e.g. ('2026-02-01', '2026-02-28')"
            )
        parsed = [_parse(v) for v in arg]
        if parsed[0] is None or parsed[1] is None:
            raise InvalidArgument(f"public[{key!r}] = {tuple(arg)!r}: write dates as ISO 8601, e.g. '2026-02-01'")
        if parsed[0] > parsed[1]:
            raise InvalidArgument(f"public[{key!r}] = {tuple(arg)!r}: the first date must not be after the last")
        if parsed[0] < _FIRST_DATE or parsed[1] > _LAST_DATE:
            raise InvalidArgument(
                f"public[{key!r}] = {tuple(arg)!r}: dates go from {_FIRST_DATE.date()} to {_LAST_DATE.date()} "
                "here (pandas' nanosecond range): declare a range within it"
            )
        return {"dates": list(arg)}
    if form == "categories":
        return {"categories": _check_categories(key, aname, kind, dtype, arg)}
    if kind not in "UO":
        raise InvalidArgument(f"public[{key!r}] is a text format, but {where}: {HOW}")
    if not isinstance(arg, str) or not _FORMAT.match(arg):
        raise InvalidArgument(
            f"public[{key!r}] = {str(arg)[:120]!r} is not a text format: fixed text around one number field, "
            "'{}' or '{:06d}' (no other braces), e.g. 'ID-{:06d}'"
        )
    return {"format": arg}


def _check_categories(key: str, aname: str, kind: str, dtype: Any, arg: Any) -> list[Any]:
    where = _where(key, aname, kind)
    if not isinstance(arg, list) or not 0 < len(arg) <= MAX_CATEGORIES:
        raise InvalidArgument(f"public[{key!r}]: categories are a list of 1 to {MAX_CATEGORIES} values")
    want: tuple[type, ...] = {"i": (int,), "u": (int,), "f": (int, float), "b": (bool,), "U": (str,)}.get(
        kind, (str, int, float, bool)
    )
    if kind == "M":
        raise InvalidArgument(f"public[{key!r}] lists categories, but {where}: give a date range (first, last)")
    if not all(type(c) in want for c in arg):
        raise InvalidArgument(f"public[{key!r}]: the categories must be {_KIND_WORDS[kind]}, since {where}")
    if any(isinstance(c, str) and len(c) > MAX_TEXT for c in arg):
        raise InvalidArgument(f"public[{key!r}]: a category is at most {MAX_TEXT} characters")
    if any(isinstance(c, float) and not math.isfinite(c) for c in arg):
        raise InvalidArgument(f"public[{key!r}]: categories are finite values (no NaN or infinity)")
    if len({(type(c) is str, c) for c in arg}) != len(arg):
        raise InvalidArgument(f"public[{key!r}]: the categories must be distinct")
    if kind == "u" and any(c < 0 for c in arg):
        raise InvalidArgument(f"public[{key!r}]: {where}, so the categories cannot be negative")
    if kind == "c":
        own = list(dtype.categories)
        own_set = set(own)
        missing = [c for c in arg if c not in own_set]
        if missing:
            raise InvalidArgument(
                f"public[{key!r}] lists {missing[:5]!r}, not among the column's own categories {own[:20]!r}: "
                "declare a subset of them (or leave it out: a categorical column's categories are public)"
            )
    return list(arg)


def bounds_of(public: Mapping[str, Any]) -> dict[str, list[float]]:
    """The numeric ranges: the DP bounds of those columns."""
    return {k: list(d["range"]) for k, d in public.items() if isinstance(d, Mapping) and "range" in d}


def categories_of(public: Mapping[str, Any], column: str) -> list[Any] | None:
    d = public.get(column)
    return list(d["categories"]) if isinstance(d, Mapping) and "categories" in d else None


def from_stored(stored: Any) -> dict[str, dict[str, Any]]:
    """Stored declarations (older nodes stored bounds alone: ``{col: [lower, upper]}``)."""
    if not isinstance(stored, Mapping):
        return {}
    return {str(k): (dict(v) if isinstance(v, Mapping) else {"range": list(v)}) for k, v in stored.items()}


def describe(public: Mapping[str, Any]) -> list[str]:
    """One line per declaration, for people: ``weight: 0.5 to 6.0``, ``sex: F, M``."""
    lines = []
    for k, d in public.items():
        form, arg = next(iter(d.items()))
        if form in ("range", "dates"):
            text = f"{arg[0]} to {arg[1]}"
        elif form == "categories":
            shown = ", ".join(map(str, arg[:12]))
            text = f"one of {shown}{', …' if len(arg) > 12 else ''}"
        else:
            text = f"like {render(arg, [0])[0]!r} ({arg})"
        lines.append(f"{k}: {text}")
    return lines
