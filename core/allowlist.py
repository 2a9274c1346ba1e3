"""The allowlist: a declarative table of (type, attribute) → rule.

Only what is listed here runs on a node. Nothing that does I/O, evaluates code, reflects or
returns modules or functions is listed; in-place forms (``inplace=True``, ``out=``, torch's
``add_``) are refused, so stored assets are never changed. Each rule also says what the result's
shape reveals: a private result's shape is public only when it follows from public shapes
alone ("same" as the input, a "scalar", "rows" of a column selection), never from the data.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument, OpNotAllowed


@dataclass(frozen=True)
class Rule:
    """How one attribute may be used: as a ``method`` or an ``attr``; ``shape`` says what its
    result's shape reveals; ``check`` vets arguments before anything runs."""

    kind: str = "method"
    shape: str | None = None
    check: Callable[[str, tuple[Any, ...], dict[str, Any]], None] | None = None


AGG_FUNCS = frozenset(
    "sum mean median std var min max count size nunique first last prod sem skew kurt any all "
    "idxmin idxmax cumsum cumprod cummin cummax quantile mode".split()
)


def _check_agg_names(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """agg / transform take function names, never callables, and only names of reductions."""

    def walk(x: Any) -> None:
        if isinstance(x, str):
            if x not in AGG_FUNCS:
                raise OpNotAllowed(
                    f"{name}({x!r}) is not allowed: aggregate with one of {', '.join(sorted(AGG_FUNCS))}",
                    op=f"{name}({x!r})",
                )
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif x is not None and not isinstance(x, (int, float, bool)):
            raise OpNotAllowed(f"{name} takes function names as strings, not {type(x).__name__}", op=name)

    for a in args:
        walk(a)
    for k, v in kwargs.items():
        if k in ("func", "arg"):
            walk(v)
        elif isinstance(v, tuple) and len(v) == 2:  # named aggregation: new=("col", "mean")
            walk(v[1])


def _check_to(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Tensor.to: dtypes and the CPU only (no device moves, no copies into other tensors)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, str) and a != "cpu":
            raise OpNotAllowed(f"Tensor.to({a!r}) is not allowed: only dtypes and 'cpu'", op=f"Tensor.to({a!r})")


def _seeded(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``sample`` with a public seed: an approved plan run again must release the rows that were
    reviewed, not a fresh draw each time (150 runs of one approved ``sample(5)`` gave 351 rows)."""
    seed = kwargs.get("random_state", args[5] if len(args) > 5 else None)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidArgument(f"{name}: give random_state=<an int>, so every run draws the same rows", op=name)


def _no_regex(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Frame-level regexes run on pandas' backtracking ``re``: refused (``.str`` methods use RE2)."""
    positional = args[2] if name.endswith(".filter") and len(args) > 2 else None  # filter(items, like, regex)
    if kwargs.get("regex") not in (None, False) or positional is not None:
        raise OpNotAllowed(
            f"{name}(regex=…) is not allowed: use .str.replace / .str.contains, which run "
            "regular expressions in linear time",
            op=f"{name}(regex=…)",
        )


def _names(text: str, kind: str = "method", shape: str | None = None, check: Any = None) -> dict[str, Rule]:
    return {n: Rule(kind, shape, check) for n in text.split()}


# ---- pandas -------------------------------------------------------------------------------

_FRAME_COMMON = {
    **_names(
        "abs round clip isna isnull notna notnull astype fillna cumsum cumprod cummax cummin "
        "rank shift diff pct_change add sub mul div truediv floordiv mod pow radd rsub rmul rdiv "
        "eq ne lt le gt ge isin where mask replace copy sort_values sort_index to_numpy",
        shape="same",
    ),
    **_names(
        "sum mean median std var min max prod sem skew kurt nunique count idxmax idxmin all any "
        "describe quantile value_counts mode nlargest nsmallest dropna drop_duplicates duplicated "
        "head tail reset_index set_index rename groupby merge corr cov drop filter "
        "select_dtypes melt explode equals between unique tolist to_list to_frame item map "
        "transpose assign rolling expanding ewm first_valid_index last_valid_index"
    ),
    **_names("agg aggregate transform", check=_check_agg_names),
    **_names("replace", shape="same", check=_no_regex),
    **_names("filter", check=_no_regex),
    **_names("sample", check=_seeded),
    **_names("shape dtypes dtype columns index T values size ndim empty name iloc loc iat at str dt", kind="attr"),
}

_GROUPBY = {
    **_names(
        "sum mean median std var min max count size nunique first last prod sem quantile "
        "describe cumcount cumsum cumprod cummax cummin head tail idxmax idxmin any all "
        "value_counts rank"
    ),
    **_names("agg aggregate transform", check=_check_agg_names),
    **_names("ngroups groups indices", kind="attr"),
}

_WINDOW = {
    **_names("sum mean median std var min max count quantile sem skew kurt"),
    **_names("agg aggregate", check=_check_agg_names),
}

_STR = _names(
    "lower upper strip lstrip rstrip len contains startswith endswith replace slice get "
    "zfill pad center isdigit isalpha isnumeric isspace islower isupper title capitalize "
    "count find split"
)

_DT = {
    **_names(
        "year month day dayofweek day_of_week dayofyear day_of_year quarter hour minute "
        "second date weekday is_month_start is_month_end",
        kind="attr",
        shape="same",
    ),
    **_names("strftime floor ceil round normalize month_name day_name", shape="same"),
}

_INDEX = {
    **_names("tolist to_list to_numpy unique nunique isin min max argmax argmin sort_values"),
    **_names("shape size dtype name names ndim values nlevels", kind="attr"),
}

# ---- numpy --------------------------------------------------------------------------------

_NDARRAY = {
    **_names("astype clip round copy cumsum cumprod abs conj", shape="same"),
    **_names("sum mean std var min max prod all any argmax argmin ptp", shape=None),
    **_names(
        "argsort dot flatten ravel reshape squeeze swapaxes transpose tolist item nonzero take repeat diagonal trace"
    ),
    **_names("shape dtype ndim size T real imag nbytes itemsize", kind="attr"),
}

NUMPY_UFUNCS = frozenset(
    "absolute fabs add subtract multiply divide true_divide floor_divide power float_power sqrt square "
    "cbrt exp exp2 expm1 log log1p log2 log10 sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh "
    "arcsinh arccosh arctanh sign floor ceil rint trunc isnan isinf isfinite maximum minimum fmax fmin "
    "negative positive reciprocal greater greater_equal less less_equal equal not_equal logical_and "
    "logical_or logical_not logical_xor mod remainder fmod hypot deg2rad rad2deg degrees radians "
    "bitwise_and bitwise_or bitwise_xor invert".split()
)

_NUMPY_FUNCS = {
    **{f"numpy.{n}": Rule("function", "same") for n in NUMPY_UFUNCS},
    **_names(
        " ".join(f"numpy.{n}" for n in "abs clip round around cumsum cumprod nan_to_num".split()),
        kind="function",
        shape="same",
    ),
    **_names(
        " ".join(
            f"numpy.{n}"
            for n in (
                "sum mean std var min max amin amax median percentile quantile nanmean nansum nanstd nanvar "
                "nanmin nanmax nanmedian nanpercentile nanquantile argmax argmin argsort sort unique "
                "dot matmul inner outer tensordot transpose reshape ravel concatenate stack vstack hstack "
                "column_stack histogram histogram_bin_edges bincount digitize corrcoef cov diff "
                "count_nonzero all any average einsum prod ptp squeeze expand_dims linspace isclose allclose "
                "searchsorted where logaddexp linalg.norm linalg.inv linalg.det linalg.solve linalg.svd "
                "linalg.eigh linalg.lstsq linalg.pinv trace diag"
            ).split()
        ),
        kind="function",
    ),
}

# ---- torch --------------------------------------------------------------------------------

_TORCH_ELEMENTWISE = (
    "abs exp log log1p log2 log10 sqrt rsqrt sigmoid tanh relu sin cos tan sign floor ceil round "
    "trunc neg reciprocal square isnan isinf isfinite nan_to_num clamp clip pow add sub mul div "
    "maximum minimum eq ne gt lt ge le logical_and logical_or logical_not where softmax log_softmax "
    "cumsum cumprod erf"
)
_TORCH_OTHER = (
    "sum mean std var min max amin amax argmax argmin median prod norm matmul mm bmm dot mv cat stack "
    "reshape flatten transpose permute squeeze unsqueeze sort argsort topk unique einsum t "
    "count_nonzero all any quantile cdist outer allclose"
)

_TORCH_FUNCS = {
    **_names(" ".join(f"torch.{n}" for n in _TORCH_ELEMENTWISE.split()), kind="function", shape="same"),
    **_names(" ".join(f"torch.{n}" for n in _TORCH_OTHER.split()), kind="function"),
    **_names(
        " ".join(
            f"torch.nn.functional.{n}"
            for n in ("relu sigmoid softmax log_softmax gelu silu tanh leaky_relu normalize").split()
        ),
        kind="function",
        shape="same",
    ),
    **_names(
        " ".join(
            f"torch.nn.functional.{n}"
            for n in ("linear cross_entropy mse_loss l1_loss nll_loss binary_cross_entropy one_hot").split()
        ),
        kind="function",
    ),
}

_TENSOR = {
    **_names(_TORCH_ELEMENTWISE + " float double half int long bool contiguous detach clone", shape="same"),
    **_names(_TORCH_OTHER + " view numpy tolist item size dim numel"),
    **_names("to", shape="same", check=_check_to),
    **_names("shape dtype ndim T mT requires_grad", kind="attr"),
}

# ---- pandas functions ---------------------------------------------------------------------

_PANDAS_FUNCS = _names(
    "pandas.merge pandas.concat pandas.cut pandas.qcut pandas.to_datetime pandas.to_numeric pandas.isna pandas.notna",
    kind="function",
)

# type key → attribute → rule
TABLE: dict[str, dict[str, Rule]] = {
    "DataFrame": _FRAME_COMMON,
    "Series": _FRAME_COMMON,
    "DataFrameGroupBy": _GROUPBY,
    "SeriesGroupBy": _GROUPBY,
    "Rolling": _WINDOW,
    "Expanding": _WINDOW,
    "ExponentialMovingWindow": _WINDOW,
    "StringMethods": _STR,
    "DatetimeProperties": _DT,
    "Index": _INDEX,
    "ndarray": _NDARRAY,
    "numpy_scalar": {**_names("item astype round"), **_names("dtype shape ndim real imag", kind="attr")},
    "Tensor": _TENSOR,
    "functions": {**_NUMPY_FUNCS, **_TORCH_FUNCS, **_PANDAS_FUNCS},
}

# Python operators a pointer records: name → (function, what the result's shape reveals)
OPERATORS: dict[str, Callable[..., Any]] = {
    name: getattr(operator, name)
    for name in (
        "add sub mul truediv floordiv mod pow matmul and_ or_ xor lshift rshift "
        "lt le eq ne gt ge neg pos abs invert getitem"
    ).split()
}
ELEMENTWISE_OPERATORS = frozenset(OPERATORS) - {"matmul", "getitem"}
_OPERATOR_FUNCTIONS = frozenset(OPERATORS.values())

# types that may be indexed with []
INDEXABLE = frozenset(
    "DataFrame Series ndarray Tensor Index _iLocIndexer _LocIndexer _iAtIndexer "
    "_AtIndexer DataFrameGroupBy StringMethods".split()
)

# keyword arguments that would write into existing objects: refused everywhere
FORBIDDEN_KWARGS = frozenset({"inplace", "out"})
# parameters that name where to write, or say "work in the input's memory", however they are
# passed (by keyword or by position): numpy.median(x, overwrite_input=True) reorders x
OUTPUT_PARAMS = frozenset({"out", "inplace", "overwrite_input", "overwrite_a", "overwrite_b", "overwrite_x"})
# functions that write into their input when a parameter is False
IN_PLACE_WHEN_FALSE = {"numpy.nan_to_num": "copy"}


def _kinds_by_name() -> dict[str, str]:
    kinds: dict[str, set[str]] = {}
    for key, table in TABLE.items():
        if key == "functions":
            continue
        for name, rule in table.items():
            kinds.setdefault(name, set()).add(rule.kind)
    return {name: next(iter(k)) for name, k in kinds.items() if len(k) == 1}


# names that are methods (or attributes) on every type that has them: a pointer whose type is not
# known yet (recorded, not sent) can tell a method from an attribute without computing its mock
KIND_BY_NAME = _kinds_by_name()


def lookup(type_key: str, name: str) -> Rule:
    """The rule for ``type_key.name``; raise ``OpNotAllowed`` naming it if there is none."""
    rule = TABLE.get(type_key, {}).get(name)
    if rule is None or name.startswith("_"):
        where = "" if type_key == "functions" else f"{type_key}."
        raise OpNotAllowed(
            f"{where}{name} is not on this node's allowlist: only everyday numpy / pandas / torch "
            "operations run on private data (no I/O, no code evaluation, no reflection)",
            op=f"{where}{name}",
        )
    return rule


def check_kwargs(op_name: str, kwargs: dict[str, Any]) -> None:
    """Refuse in-place and output arguments: ops never modify stored values."""
    for k, v in kwargs.items():
        if not isinstance(k, str):
            raise OpNotAllowed(f"{op_name}: keyword names must be strings", op=op_name)
        if k in FORBIDDEN_KWARGS and (k == "out" or v):
            raise OpNotAllowed(
                f"{op_name}({k}=…) is not allowed: operations on a node never modify a stored value; "
                "use the returned result instead",
                op=f"{op_name}({k}=…)",
            )


_SIGNATURES: dict[str, inspect.Signature | None] = {}


def _signature(op_name: str, fn: Callable[..., Any]) -> inspect.Signature | None:
    """``fn``'s signature, cached by op name (``ndarray.sum`` is one signature for every array;
    ``inspect.signature`` costs tens of microseconds, more than a small op)."""
    if op_name in _SIGNATURES:
        return _SIGNATURES[op_name]
    try:
        sig: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if len(_SIGNATURES) < 10_000:
        _SIGNATURES[op_name] = sig
    return sig


def check_writes(
    op_name: str, fn: Callable[..., Any], args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
) -> None:
    """Bind the arguments to ``fn``'s signature and refuse any that name an output, by keyword or
    by position (``np.add(a, 0, b)`` writes into ``b``; ``arr.sum(0, None, b)`` too)."""
    import numpy as np

    if isinstance(fn, np.ufunc):
        if len(args) > fn.nin:
            raise OpNotAllowed(
                f"{op_name} takes {fn.nin} input(s); a further positional argument is its output "
                "array, and operations on a node never write into a value: use the returned result",
                op=f"{op_name}(out)",
            )
        if "where" in kwargs:  # without out=, the masked-off elements are uninitialised memory
            raise OpNotAllowed(
                f"{op_name}(where=…) is not allowed: it returns uninitialised memory where "
                "the mask is False; use numpy.where(mask, op(x), other) instead",
                op=f"{op_name}(where=…)",
            )
        return
    if fn in _OPERATOR_FUNCTIONS:
        return  # Python's operators take their operands and nothing else
    sig = _signature(op_name, fn)
    if sig is None:
        # only torch's C functions come without a Python signature: their parser takes out= by
        # keyword alone (refused by check_kwargs), so a positional argument is never an output
        if not _is_torch_builtin(fn):
            raise OpNotAllowed(f"{op_name}: its arguments cannot be checked, so it does not run", op=op_name)
        return
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return  # the call itself will fail with the library's own error
    in_place = IN_PLACE_WHEN_FALSE.get(op_name)
    if in_place is not None and bound.arguments.get(in_place, True) is False:
        raise OpNotAllowed(
            f"{op_name}({in_place}=False) writes into its input: operations on a node never "
            "modify a value; leave it out",
            op=f"{op_name}({in_place}=False)",
        )
    for pname, value in bound.arguments.items():
        param = sig.parameters[pname]
        if (pname in OUTPUT_PARAMS or pname.startswith("overwrite")) and value is not None and value is not False:
            raise OpNotAllowed(
                f"{op_name}({pname}=…) is not allowed (passed by position or keyword): operations on "
                "a node never modify a value; use the returned result instead",
                op=f"{op_name}({pname}=…)",
            )
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            check_kwargs(op_name, value)


def _is_torch_builtin(fn: Callable[..., Any]) -> bool:
    module = getattr(fn, "__module__", None)
    if module is None and getattr(fn, "__self__", None) is not None:
        module = type(fn.__self__).__module__
    return isinstance(module, str) and module.split(".")[0] == "torch"


# what numpy may still do with an array of Python objects: its loops over them call back into
# Python while holding the GIL (an einsum over 700 objects stalls every thread for seconds), so
# only structural, linear-time operations are allowed on them
OBJECT_ARRAY_OPS = frozenset(
    "ndarray.astype ndarray.tolist ndarray.item ndarray.copy ndarray.flatten ndarray.ravel "
    "ndarray.reshape ndarray.squeeze ndarray.swapaxes ndarray.transpose ndarray.take "
    "numpy.transpose numpy.reshape numpy.ravel numpy.squeeze numpy.expand_dims getitem".split()
)


def _is_object_dtype(x: Any) -> bool:
    import numpy as np

    if x is object:
        return True
    if isinstance(x, (str, np.dtype)):
        try:
            return np.dtype(x).kind == "O"
        except (TypeError, ValueError):  # not a dtype: the library will say so
            return False
    return False


def check_object_arrays(op_name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse making arrays of Python objects, and numpy work on them beyond the structural."""
    import numpy as np

    requested = kwargs.get("dtype")
    if op_name.endswith(".astype") and args:
        requested = args[0] if len(args) == 1 else args[1]
    if requested is not None and _is_object_dtype(requested):
        raise OpNotAllowed(
            f"{op_name}(dtype=object) is not allowed: arrays of Python objects are not "
            "computed on a node; keep numeric dtypes, or pandas' own string dtype",
            op=f"{op_name}(object)",
        )
    # Python's operators on object arrays are elementwise (linear), except @
    if op_name in OBJECT_ARRAY_OPS or not (op_name.startswith(("numpy.", "ndarray.")) or op_name == "matmul"):
        return
    for a in (*args, *kwargs.values()):
        if isinstance(a, np.ndarray) and a.dtype.kind == "O":
            raise OpNotAllowed(
                f"{op_name} on an array of Python objects is not allowed (numpy's object "
                "loops hold the interpreter and stall the node); use pandas on the column, "
                "or convert to a numeric dtype first",
                op=op_name,
            )
