"""Differentially private releases: the node computes exact aggregates, charges the ledger, then
releases them through OpenDP's floating-point-safe Laplace / Gaussian / noisy-max mechanisms.

Sensitivity follows from the clamping bounds and from how many rows one data subject may
contribute (the dataset's ``subject_column`` and ``max_rows_per_subject``); rows beyond that
bound are dropped before aggregating, so the bound holds.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pandas as pd

from syft_kernel.core.codec import short_repr
from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.executor import Value
from syft_kernel.core.public import categories_of
from syft_kernel.core.stability import source_of

from .ledger import rho_for
from .state import DataNode

QUERIES = ("count", "sum", "mean", "var", "quantile", "histogram", "group_count", "group_sum", "group_mean")
MAX_GROUPS = 1000
QUANTILE_CANDIDATES = 1000


def opendp_error() -> type[Exception]:
    """OpenDP's exception type (a measurement that refuses its inputs)."""
    from opendp.mod import OpenDPException

    return OpenDPException


def _dp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


MIN_EPSILON = 1e-9  # smaller releases are pure noise: refused, so none is free (no flood of them)
MIN_RHO = 1e-18


def _positive(name: str, x: Any, least: float = 0.0) -> float:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x <= 0:
        raise InvalidArgument(f"{name} must be a positive, finite number (got {x!r})")
    if x < least:
        raise InvalidArgument(f"{name} must be at least {least:g} (got {x!r}): a smaller one releases only noise")
    return float(x)


def check_scales(
    query: str, sensitivities: list[float], parts: int, mechanism: str, epsilon: float, rho: float
) -> None:
    """Refuse, before anything is charged, a release whose noise scale is not a positive finite
    number (huge public bounds, or a budget split too thin): it could not be released."""
    for s in sensitivities:
        if mechanism == "laplace":
            scale = s / (epsilon / parts) if epsilon / parts > 0 else math.inf
        else:
            scale = s / math.sqrt(2 * rho / parts) if rho / parts > 0 else math.inf
        if not (math.isfinite(s) and math.isfinite(scale) and scale > 0):
            raise InvalidArgument(
                f"this {query} cannot be released: its noise scale is not finite (bounds too "
                "wide, or epsilon too small): narrow the bounds or spend more epsilon"
            )


def mechanism_of(params: dict[str, Any]) -> tuple[str, float, float]:
    """(laplace | gaussian, epsilon, rho) from epsilon, or rho, or epsilon and delta."""
    eps, delta, rho = params.get("epsilon"), params.get("delta"), params.get("rho")
    if rho is not None:
        if eps is not None:
            raise InvalidArgument("give epsilon (Laplace), epsilon and delta (Gaussian) or rho (Gaussian), not both")
        return "gaussian", 0.0, _positive("rho", rho, MIN_RHO)
    eps = _positive("epsilon", eps, MIN_EPSILON)
    if delta is None:
        return "laplace", eps, 0.0
    if not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise InvalidArgument(f"delta must be between 0 and 1, exclusive (got {delta!r})")
    return "gaussian", 0.0, _positive("the zCDP rho of this epsilon and delta", rho_for(eps, float(delta)), MIN_RHO)


def _bounds(params: dict[str, Any], declared: dict[str, Any], column: Any) -> tuple[float, float]:
    b = params.get("bounds")
    if b is None:
        b = declared.get(str(column))
    if b is None:
        raise InvalidArgument(
            f"bounds=(lower, upper) are required for {column!r} (the owner declared none): "
            "values are clamped to them and they set the noise"
        )
    if not isinstance(b, (list, tuple)) or len(b) != 2:
        raise InvalidArgument("bounds are (lower, upper)")
    lo, hi = (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in b)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise InvalidArgument(f"bounds must be finite with lower < upper (got {tuple(b)!r})")
    own = declared.get(str(column))
    if own is not None and not (float(own[0]) <= lo and hi <= float(own[1])):
        raise InvalidArgument(
            f"bounds for {column!r} must lie within the owner's declared bounds {tuple(own)!r} "
            f"(got {(lo, hi)!r}): leave them out to use the declared ones"
        )
    return lo, hi


def release(values: np.ndarray, sensitivity: float, mechanism: str, epsilon: float, rho: float) -> np.ndarray:
    """Add OpenDP noise to exact aggregates: Laplace scaled to L1 sensitivity / epsilon, or Gaussian
    to L2 sensitivity / sqrt(2 rho). The measurement's own privacy map checks the scale."""
    dp = _dp()
    values = np.asarray(values, dtype=np.float64).ravel()
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=len(values))
    if mechanism == "laplace":
        scale = sensitivity / epsilon
        meas = dp.m.make_laplace(domain, dp.l1_distance(T=float), scale)
        assert meas.map(sensitivity) <= epsilon * (1 + 1e-9)
    else:
        scale = sensitivity / math.sqrt(2 * rho)
        meas = dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale)
        assert meas.map(sensitivity) <= rho * (1 + 1e-9)
    return np.asarray(meas(values.tolist() if len(values) < 64 else values), dtype=np.float64)


def _check_stable(node: DataNode, value: Value) -> None:
    """Refuse DP on a value whose rows may not map one for one into the asset's rows (the
    noise assumes one person changes at most their own rows), or that failed on the data."""
    if not value.private:
        raise InvalidArgument("this value is public already: a DP query is for private data")
    if value.stable is None:
        raise InvalidArgument(
            "DP queries run on a dataset asset or on row-wise transformations of it (filters by a row-wise "
            "condition, column selection, elementwise maps and comparisons with public numbers, clamping); "
            "this value comes from an aggregate, a positional lookup, repeated or reordered rows, a join "
            "or a reshaping, so one person could count more than once. Build it from the asset's columns "
            "row by row, and let the DP query aggregate"
        )
    source = node.store.get(f"asset:{source_of(value.stable)}", "", True).value
    if isinstance(source, (pd.Series, pd.DataFrame)) and not source.index.is_unique:
        raise InvalidArgument(
            f"the asset {source_of(value.stable)!r} has repeated index labels, so its rows cannot be told "
            "apart: ask the owner to give it a unique index"
        )
    if value.failed is not None:  # unreachable for stable values (their ops cannot fail on values alone)
        raise InvalidArgument("this value could not be computed on the data; a DP query needs a value that exists")


def _declared_keys(node: DataNode, value: Value, by: Any, public: dict[str, Any] | None = None) -> list[Any]:
    """Group keys when the scientist gives none: the categories the owner declared for that
    column (in ``public``, or as the asset's stored categorical dtype), never the categories of
    the value queried (a cast to "category" would make its values the keys)."""
    declared = categories_of(public or {}, str(by)) if isinstance(by, str) else None
    if declared is not None:
        return declared
    source = node.store.get(f"asset:{source_of(value.stable)}", "", True).value
    dtype = source[by].dtype if isinstance(source, pd.DataFrame) and by in source.columns else None
    if not isinstance(dtype, pd.CategoricalDtype):
        raise InvalidArgument(
            f"grouping by {by!r} needs public keys: pass categories=[…] (its values are "
            "private; a column the owner declared categories for, or stored as categorical, has public keys)"
        )
    return list(dtype.categories)


def _subject_rows(node: DataNode, value: Value, data: Any, dataset: dict[str, Any]) -> tuple[Any, int, Any]:
    """Keep at most ``max_rows_per_subject`` rows per subject; return (data, that bound, the
    subject id of each kept row, or None when the dataset tracks no subjects)."""
    c = int(dataset.get("max_rows_per_subject") or 1)
    subject = dataset.get("subject_column")
    if not subject:
        return data, 1, None
    if not isinstance(data, (pd.Series, pd.DataFrame)):
        raise InvalidArgument("this dataset tracks data subjects: run DP queries on its frames or their columns")
    frames = [a["name"] for a in dataset["assets"] if a.get("columns") and subject in a["columns"]]
    if not frames:
        raise InvalidArgument(f"no asset of {dataset['name']!r} holds the subject column {subject!r}")
    lineage = next(iter(value.lineage))
    asset = lineage.split("/", 1)[1]
    source = node.store.get(f"asset:{lineage}", "", True).value if asset in frames else None
    if source is None:
        raise InvalidArgument("DP queries run on columns of the asset that holds the subject column")
    try:
        ids = source[subject].reindex(data.index)
    except Exception:
        raise InvalidArgument(
            "the rows of this value cannot be traced back to their subjects (keep the "
            "frame's index: no reset_index before a DP query)"
        ) from None
    # a row whose subject id is missing is a subject of its own (never one shared "nan" subject)
    missing = ids.isna()
    if missing.any():
        ids = ids.astype(object).where(~missing, pd.Series([f"row {i!r}" for i in ids.index], index=ids.index))
    keep = (ids.groupby(ids).cumcount() < c).to_numpy()
    return data[keep], c, ids[keep].astype(str).to_numpy()


_LABEL_TYPES = (str, int, float, bool)


def _check_params(params: dict[str, Any]) -> None:
    """The types of the column names, public keys and bin edges, before anything is computed or
    charged (the numbers are checked where they are used)."""
    for key in ("by", "column"):
        v = params.get(key)
        if v is not None and type(v) not in _LABEL_TYPES:
            raise InvalidArgument(f"{key} names a column (a string or a number), not {short_repr(v)}")
    categories = params.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(type(c) in _LABEL_TYPES for c in categories):
            raise InvalidArgument("categories are a list of public values (strings or numbers)")
        if len({type(c) is str for c in categories}) > 1:
            raise InvalidArgument("categories are all strings or all numbers, not a mix")
        if any(isinstance(c, float) and not math.isfinite(c) for c in categories):
            raise InvalidArgument("categories are finite values (no NaN or infinity)")
        if len(set(categories)) != len(categories):
            # 1, 1.0 and True are one key to pandas: each would release the same count again,
            # one person moving several bins while the noise assumes one
            raise InvalidArgument("categories must be distinct (1, 1.0 and True count as the same key)")
    bins = params.get("bins")
    if bins is not None and (
        not isinstance(bins, list) or not all(type(x) in (int, float) and math.isfinite(x) for x in bins)
    ):
        raise InvalidArgument("bins are a list of finite numbers (the edges)")


def _individual_losses(
    query: str,
    data: Any,
    params: dict[str, Any],
    declared: dict[str, Any],
    sens: list[float],
    parts: int,
    mechanism: str,
    epsilon: float,
    rho: float,
    ids: np.ndarray,
) -> pd.Series:
    """Each subject's own privacy loss in this release (epsilon for Laplace, rho for Gaussian):
    their actual contribution over the noise scale, never more than the worst case."""
    if query == "quantile":
        return pd.Series(epsilon, index=pd.unique(ids))  # the exponential mechanism: the worst case
    ones = np.ones(len(ids))
    if query in ("count", "histogram", "group_count"):
        contributions = [ones]
    else:
        column = params.get("column") if query.startswith("group_") else getattr(data, "name", None)
        values = data[column] if isinstance(data, pd.DataFrame) else data
        lo, hi = _bounds(params, declared, column)
        x = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), lo, hi)
        contributions = {
            "sum": [np.abs(x)],
            "group_sum": [np.abs(x)],
            "mean": [np.abs(x), ones],
            "group_mean": [np.abs(x), ones],
            "var": [np.abs(x), x * x, ones],
        }[query]
    total = pd.Series(0.0, index=pd.unique(ids))
    for contrib, s in zip(contributions, sens):
        per_subject = pd.Series(contrib).groupby(ids).sum()
        if mechanism == "laplace":
            total = total.add(per_subject / (s / (epsilon / parts)), fill_value=0.0)
        else:
            sigma = s / math.sqrt(2 * rho / parts)
            total = total.add(per_subject**2 / (2 * sigma**2), fill_value=0.0)
    return total


class _Coerce(threading.local):
    on = False


# set while the real data is aggregated: every refusal was decided on the twin before (public),
# so the real data never raises one; a value the twin's checks did not foresee counts as missing
_COERCE = _Coerce()


def _numeric(data: Any, what: str) -> np.ndarray:
    if isinstance(data, pd.DataFrame):
        raise InvalidArgument(f"DP {what} runs on one column: select it first (births['weight'].dp.{what}(…))")
    arr = data.to_numpy() if isinstance(data, pd.Series) else np.asarray(data)
    if arr.ndim > 1:  # one row (one person) would add one value per column, not one
        raise InvalidArgument(f"DP {what} runs on one column (a 1-D value): select one first (x[:, j])")
    if arr.dtype.kind not in "biuf":
        if _COERCE.on:  # checked on the twin already: a value that is not a number is missing
            arr = pd.to_numeric(pd.Series(arr.ravel()), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            raise InvalidArgument(f"DP {what} needs a numeric column, not {arr.dtype}")
    arr = arr.astype(np.float64, copy=False).ravel()
    missing = np.isnan(arr)
    return arr[~missing] if missing.any() else arr  # no copy when nothing is missing


def _aggregate(
    query: str, data: Any, params: dict[str, Any], declared: dict[str, Any], c: int
) -> tuple[list[Any], list[float], int, dict[str, Any]]:
    """Exact aggregates, their sensitivities (L1 for one subject's c rows), the number of budget
    parts, and what ``_finish`` needs."""
    name = getattr(data, "name", None)
    if query == "count":
        return [float(len(data))], [float(c)], 1, {}
    if query in ("sum", "mean", "var"):
        lo, hi = _bounds(params, declared, name)
        x = np.clip(_numeric(data, query), lo, hi)
        m = max(abs(lo), abs(hi))
        if query == "sum":
            return [x.sum()], [c * m], 1, {}
        if query == "mean":
            return [x.sum(), float(len(x))], [c * m, float(c)], 2, {"bounds": (lo, hi)}
        return [x.sum(), (x * x).sum(), float(len(x))], [c * m, c * m * m, float(c)], 3, {"bounds": (lo, hi)}
    if query == "quantile":
        q = params.get("q")
        if not isinstance(q, (int, float)) or not 0 <= q <= 1:
            raise InvalidArgument("q is a number between 0 and 1")
        lo, hi = _bounds(params, declared, name)
        return [np.clip(_numeric(data, "quantile"), lo, hi)], [float(c)], 1, {"q": float(q), "bounds": (lo, hi)}
    if query == "histogram":
        return _histogram(data, params, c)
    return _grouped(query, data, params, declared, c)


def _histogram(data: Any, params: dict[str, Any], c: int) -> tuple[list[Any], list[float], int, dict[str, Any]]:
    categories, bins = params.get("categories"), params.get("bins")
    if (categories is None) == (bins is None):
        raise InvalidArgument("a DP histogram needs categories=[…] (public keys) or bins=[edges]")
    if categories is not None:
        if not isinstance(categories, list) or not 0 < len(categories) <= MAX_GROUPS:
            raise InvalidArgument(f"categories are a list of 1 to {MAX_GROUPS} public values")
        if not isinstance(data, pd.Series) and np.asarray(data).ndim != 1:
            raise InvalidArgument("a DP histogram runs on one column (a 1-D value): select one first")
        s = pd.Series(np.asarray(data) if not isinstance(data, pd.Series) else data)
        counts = s.astype(object).value_counts().reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
        return [counts], [float(c)], 1, {"index": categories}
    if not isinstance(bins, list) or not 2 <= len(bins) <= MAX_GROUPS + 1 or sorted(bins) != bins:
        raise InvalidArgument(f"bins are 2 to {MAX_GROUPS + 1} increasing edges")
    counts, _ = np.histogram(_numeric(data, "histogram"), bins=np.asarray(bins, dtype=np.float64))
    return [counts.astype(np.float64)], [float(c)], 1, {"edges": bins}


def _grouped(
    query: str, data: Any, params: dict[str, Any], declared: dict[str, Any], c: int
) -> tuple[list[Any], list[float], int, dict[str, Any]]:
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgument("a grouped DP query runs on a frame: births.dp.groupby('sex').mean('weight', …)")
    by = params.get("by")
    if by not in data.columns:
        raise InvalidArgument(f"no column {by!r} to group by")
    keys = params.get("categories")
    if keys is None:
        dtype = data[by].dtype
        if not isinstance(dtype, pd.CategoricalDtype):
            raise InvalidArgument(
                f"grouping by {by!r} needs public keys: pass categories=[…] (its values are "
                "private; a declared categorical column's categories are public)"
            )
        keys = list(dtype.categories)
    if not isinstance(keys, list) or not 0 < len(keys) <= MAX_GROUPS:
        raise InvalidArgument(f"a grouped DP query has 1 to {MAX_GROUPS} public keys")
    g = data[by].astype(object)
    counts = g.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    if query == "group_count":
        return [counts], [float(c)], 1, {"index": keys, "by": by}
    column = params.get("column")
    if column not in data.columns:
        raise InvalidArgument(f"no column {column!r} to aggregate")
    lo, hi = _bounds(params, declared, column)
    if data[column].dtype.kind not in "biuf" and not _COERCE.on:
        raise InvalidArgument(f"DP {query} needs a numeric column, not {data[column].dtype}")
    values = pd.to_numeric(data[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(values)  # a missing value adds nothing, and a mean does not count it
    x = pd.Series(np.clip(values[present], lo, hi), index=data.index[present])
    sums = x.groupby(g[present]).sum().reindex(keys, fill_value=0.0).to_numpy(dtype=np.float64)
    m = max(abs(lo), abs(hi))
    if query == "group_sum":
        return [sums], [c * m], 1, {"index": keys, "by": by}
    if not present.all():
        counts = g[present].value_counts().reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    return [sums, counts], [c * m, float(c)], 2, {"index": keys, "by": by, "bounds": (lo, hi)}


def _quantile(x: np.ndarray, extra: dict[str, Any], c: int, epsilon: float) -> float:
    """The exponential mechanism over candidate values (OpenDP's quantile scores + noisy max)."""
    dp = _dp()
    lo, hi = extra["bounds"]
    candidates = np.linspace(lo, hi, QUANTILE_CANDIDATES).tolist()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    scores = space >> dp.t.then_quantile_score_candidates(candidates, alpha=extra["q"])
    unit = (scores >> dp.m.then_noisy_max(dp.max_divergence(), scale=1.0, negate=True)).map(c)
    meas = scores >> dp.m.then_noisy_max(dp.max_divergence(), scale=unit / epsilon, negate=True)
    assert meas.map(c) <= epsilon * (1 + 1e-9)
    return float(candidates[meas(x)])


def _finish(query: str, noisy: list[np.ndarray], extra: dict[str, Any], params: dict[str, Any]) -> Any:
    if query in ("count", "sum"):
        return float(noisy[0][0])
    if query == "mean":
        lo, hi = extra["bounds"]
        return float(np.clip(noisy[0][0] / max(noisy[1][0], 1.0), lo, hi))
    if query == "var":
        n = max(noisy[2][0], 1.0)
        mean = noisy[0][0] / n
        return float(max(0.0, noisy[1][0] / n - mean * mean))
    if query == "histogram":
        edges = extra.get("edges") or []
        # numpy's last bin includes its upper edge; values outside the edges are not counted
        index = extra.get("index") or [
            f"[{a}, {b}{']' if i == len(edges) - 2 else ')'}" for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))
        ]
        return pd.Series(noisy[0], index=index, name="count")
    index = pd.Index(extra["index"], name=extra["by"])
    if query in ("group_count", "group_sum"):
        return pd.Series(noisy[0], index=index, name=query.split("_")[1])
    lo, hi = extra["bounds"]
    return pd.Series(np.clip(noisy[0] / np.maximum(noisy[1], 1.0), lo, hi), index=index, name=params.get("column"))
