"""The plan executor: checks a whole plan against the allowlist, then runs it op by op.

A plan is an ordered list of ops; each op is ``{"kind", "name", "args", "kwargs"}`` where
arguments are codec trees that may reference stored objects (``ref``) or earlier results
(``res``). Kinds: ``getattr`` (attribute of args[0]), ``method`` (method of args[0]), ``op`` (a
Python operator), ``function`` (an allowlisted numpy / torch / pandas function). Every result
carries the union of its inputs' lineage, so anything derived from a private asset stays private.
An op on private data runs on its public twin too (``twin.py``): what the scientist is told comes
from the twin and from public shapes (``shapes.py``), stability for DP from ``stability.py``,
quota sizes from ``sizes.py``, row-local failures from ``isolation.py``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import allowlist as al
from .codec import Decoder, ProtocolError, import_torch, loaded_torch
from .errors import InvalidArgument, OpNotAllowed, QuotaExceeded, RemoteError, SyftError
from .isolation import MAY_LEAVE_GAPS, all_defaults, isolate_rows, widen
from .regexops import REGEX_METHODS as _REGEX
from .shapes import _TO_ARRAY, check_private_sizes, stand_in
from .shapes import public_shape as _public_shape
from .sizes import charge, nbytes, over_cap
from .stability import stable_source
from .twin import NO_TWIN, Failed, conform, first_failure, labels_public, public_labels

REGEX_METHODS = {f"StringMethods.{name}": fn for name, fn in _REGEX.items()}

MAX_OPS = 10_000
log = logging.getLogger(__name__)


@dataclass
class Value:
    """A value on the node with its lineage (private assets it came from), public shape, public
    twin (the same computation on mocks), the asset its rows map into one for one (``stable``,
    for DP) and whether its labels come from the schema."""

    value: Any
    lineage: frozenset[str] = field(default_factory=frozenset)
    public_shape: tuple[int, ...] | None = None
    twin: Any = NO_TWIN
    stable: str | None = None
    labels_public: bool = True
    rows_bound: int | None = None  # a public estimate of its rows when its shape is private

    @property
    def private(self) -> bool:
        return bool(self.lineage)

    @property
    def public_view(self) -> Any:
        """What anyone may know of it: the value itself when public, else its twin."""
        return self.twin if self.private else self.value

    @property
    def failed(self) -> Failed | None:
        return self.value if isinstance(self.value, Failed) else None


def type_key(value: Any) -> str:
    """The allowlist key of a value's type (``"DataFrame"``, ``"ndarray"``, …)."""
    if isinstance(value, pd.DataFrame):
        return "DataFrame"
    if isinstance(value, pd.Series):
        return "Series"
    if isinstance(value, np.ndarray):
        return "ndarray"
    if isinstance(value, np.generic):
        return "numpy_scalar"
    if isinstance(value, pd.Index):
        return "Index"
    torch = loaded_torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return "Tensor"
    name = type(value).__name__
    if name in ("CombinedDatetimelikeProperties", "DatetimeProperties", "TimedeltaProperties"):
        return "DatetimeProperties"
    return name


_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic, pd.Timestamp, pd.Timedelta)
_CONTAINER_KEYS = frozenset(
    "DataFrame Series ndarray Index Tensor DataFrameGroupBy SeriesGroupBy Rolling Expanding "
    "ExponentialMovingWindow StringMethods DatetimeProperties _iLocIndexer _LocIndexer "
    "_iAtIndexer _AtIndexer".split()
)


def check_result(value: Any, what: str, depth: int = 0) -> None:
    """Results must be data: arrays, frames, tensors, scalars, or tuples / lists / dicts of them.
    Modules, functions, classes and arbitrary objects never become stored objects."""
    if isinstance(value, _SCALARS) or value is pd.NaT or value is pd.NA:
        return
    if isinstance(value, (tuple, list)) and depth < 4:
        for v in value[:100_000]:
            check_result(v, what, depth + 1)
        return
    if isinstance(value, dict) and depth < 4:
        for k, v in list(value.items())[:100_000]:
            check_result(k, what, depth + 1)
            check_result(v, what, depth + 1)
        return
    if type_key(value) in _CONTAINER_KEYS or isinstance(value, np.dtype):
        return
    torch = loaded_torch()
    if torch is not None and isinstance(value, (torch.Size, torch.dtype)):
        return
    raise OpNotAllowed(f"{what} returned a {type(value).__name__}, which is not data and stays out", op=what)


_SLACK = 1 << 20  # a view may keep up to this much more than itself alive


def _keeps_more_alive(arr: np.ndarray) -> bool:
    base = arr.base
    return isinstance(base, np.ndarray) and base.nbytes > 2 * arr.nbytes + _SLACK


def compact(value: Any) -> Any:
    """A small view of a large array keeps all of it alive, while a quota counts only the view:
    store a copy instead (read-only like every stored value)."""
    if isinstance(value, np.ndarray):
        return freeze(value.copy()) if _keeps_more_alive(value) else value
    torch = loaded_torch()
    if torch is not None and isinstance(value, torch.Tensor):
        own = value.numel() * value.element_size()
        return value.clone() if value.untyped_storage().nbytes() > 2 * own + _SLACK else value
    if isinstance(value, (pd.Series, pd.DataFrame)):
        columns = (
            [value] if isinstance(value, pd.Series) else [value.iloc[:, i] for i in range(min(value.shape[1], 1000))]
        )
        for col in columns:
            arr = col.to_numpy(copy=False) if col.dtype.kind in "biufcmM" else None
            if arr is not None and _keeps_more_alive(arr):
                return value.copy(deep=True)
    return value


def _readonly_array(x: Any) -> Any:
    """A tensor as a read-only numpy view of its memory (anything else as it is)."""
    torch = loaded_torch()
    if torch is not None and isinstance(x, torch.Tensor):
        arr = x.detach().numpy()
        arr.flags.writeable = False
        return arr
    return x


def freeze(value: Any, depth: int = 0) -> Any:
    """Make a result read-only where the library allows it (numpy arrays, also inside tuples,
    lists and dicts), so no later op can write into a stored value or a cached asset."""
    if isinstance(value, np.ndarray):
        if value.flags.writeable:
            value.flags.writeable = False
    elif isinstance(value, (tuple, list)) and depth < 4:
        for v in value[:100_000]:
            freeze(v, depth + 1)
    elif isinstance(value, dict) and depth < 4:
        for v in list(value.values())[:100_000]:
            freeze(v, depth + 1)
    return value


class _Refs:
    """Decoder hook: resolves refs and earlier results, recording their lineage."""

    def __init__(
        self,
        resolve: Callable[[str], Value],
        results: Sequence[Value],
        inputs: Sequence[Value] = (),
        twin: bool = False,
    ) -> None:
        self.resolve = resolve
        self.results = results
        self.inputs = inputs
        self.twin = twin  # decode each value's public twin instead of the value
        self.seen: list[Value] = []

    def __call__(self, node: dict[str, Any]) -> Any:
        tag = node.get("~")
        if tag == "ref":
            v = self.resolve(str(node.get("id")))
        elif tag == "res":
            i = node.get("i")
            if not isinstance(i, int) or not 0 <= i < len(self.results):
                raise ProtocolError(f"plan refers to result {i!r} before it exists")
            v = self.results[i]
        elif tag == "in":
            i = node.get("i")
            if not isinstance(i, int) or not 0 <= i < len(self.inputs):
                raise ProtocolError(f"plan refers to input {i!r} but has {len(self.inputs)}")
            v = self.inputs[i]
        else:
            raise ProtocolError(f"unknown value kind {tag!r}")
        self.seen.append(v)
        return v.public_view if self.twin else v.value


def _validate(ops: Any) -> list[dict[str, Any]]:
    """Check the plan's shape and every op name against the allowlist before anything runs."""
    if not isinstance(ops, list) or not ops:
        raise ProtocolError("a plan is a non-empty list of ops")
    if len(ops) > MAX_OPS:
        raise ProtocolError(f"a plan holds at most {MAX_OPS} ops")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("name"), str):
            raise ProtocolError(f"op {i} is malformed: expected a map with kind, name, args")
        kind, name = op.get("kind"), op["name"]
        if not isinstance(op.get("args", []), list) or not isinstance(op.get("kwargs", []), list):
            raise ProtocolError(f"op {i}: args and kwargs must be lists")
        if kind == "op":
            if name not in al.OPERATORS:
                raise OpNotAllowed(f"operator {name!r} is not allowed", op=name)
        elif kind == "function":
            al.lookup("functions", name)
        elif kind in ("getattr", "method"):
            if name.startswith("_"):
                al.lookup("", name)  # raises, naming it
            if kind == "getattr" and (len(op.get("args", [])) != 1 or op.get("kwargs")):
                raise ProtocolError(f"op {i}: an attribute ({name}) takes its target and nothing else")
        else:
            raise ProtocolError(f"op {i} has unknown kind {kind!r}")
    return ops


@dataclass(frozen=True)
class RunLimits:
    """What one plan may use on the node (from the node's ``Limits``): its time, the columns of
    a frame, and the bytes its live intermediate results may hold at once."""

    timeout_s: float = 300.0
    max_columns: int = 10_000
    max_bytes: int = 1 << 62


def _last_uses(ops: list[dict[str, Any]]) -> dict[int, int]:
    """For each result an op refers to, the index of the last op that refers to it."""
    last: dict[int, int] = {}
    for i, op in enumerate(ops):
        stack: list[Any] = [op.get("args", []), op.get("kwargs", [])]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                if x.get("~") == "res" and isinstance(x.get("i"), int):
                    last[x["i"]] = i
                else:
                    stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
    return last


_DROPPED = Value(None)
_HARD_CEILING = 10


def run_plan(
    ops: Any,
    resolve: Callable[[str], Value],
    buffers: Sequence[Any] = (),
    inputs: Sequence[Value] = (),
    limits: RunLimits | None = None,
    keep: Sequence[int] | None = None,
) -> list[Value]:
    """Validate then run a plan; return every op's result as a ``Value``. With ``limits``
    (on the node), the plan stops between ops once past its time, and no result may exceed them;
    with ``keep``, a result no later op uses and the caller does not keep is dropped as soon as
    it is done with (its place holds ``None``), and the live ones count against ``max_bytes``."""
    _validate(ops)
    results: list[Value] = []
    started = time.monotonic()
    # the time limit counts public work only (ops on public values, and every op's twin), so
    # whether it stops a plan never depends on how long the private data took; the private
    # work is held to a hard ceiling of ten times the limit (a timing channel, at that extreme)
    clock = [0.0]
    drop_after: dict[int, list[int]] = {}
    if keep is not None and len(ops) == 1:
        keep = None  # one op: its result is the kept one, counted when it is stored
    if keep is not None:
        kept, last_uses = set(keep), _last_uses(ops)
        for j in range(len(ops)):
            if j not in kept:  # dropped after its last use (or at once, if nothing uses it)
                drop_after.setdefault(max(j, last_uses.get(j, j)), []).append(j)
    live, sizes = 0, [0] * len(ops)
    for i, op in enumerate(ops):
        if (
            limits is not None
            and i
            and (clock[0] > limits.timeout_s or time.monotonic() - started > _HARD_CEILING * limits.timeout_s)
        ):
            raise QuotaExceeded(
                f"the plan ran longer than the node's {limits.timeout_s:g} s limit and was "
                f"stopped before op {i}: split it into smaller plans",
                limit="time",
                op_index=i,
            )
        try:
            results.append(_run_op(op, resolve, results, buffers, inputs, limits, clock))
        except SyftError as e:
            e.data.setdefault("op_index", i)
            raise
        if limits is not None and keep is not None:
            sizes[i] = charge(results[i])
            live += sizes[i]
            if live > limits.max_bytes:
                raise QuotaExceeded(
                    f"the plan's results alive at op {i} take more than your {limits.max_bytes / 2**20:,.0f} MiB "
                    "quota on this node: keep fewer results, or work on a smaller part of the data",
                    limit="bytes",
                    op_index=i,
                )
            for j in drop_after.get(i, ()):
                live -= sizes[j]
                results[j] = _DROPPED
    return results


def _module_function(name: str) -> Callable[..., Any]:
    """Resolve an allowlisted dotted function name from the three libraries we expose."""
    root, _, rest = name.partition(".")
    if root == "numpy":
        obj: Any = np
    elif root == "pandas":
        obj = pd
    elif root == "torch":
        obj = import_torch()
    else:
        raise OpNotAllowed(f"{name} is not allowed", op=name)
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


class _Args:
    """An op's decoded arguments, and for each the stored value it is (None for a literal)."""

    def __init__(self, op: dict[str, Any] | None, refs: _Refs | None, buffers: Sequence[Any]) -> None:
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}
        self.values: list[Value | None] = []
        self.nested: list[bool] = []  # whether an argument holds references inside it
        self.nested_priv: list[bool] = []  # … private ones
        self.nested_private = False
        if op is None or refs is None:
            return
        dec = Decoder(buffers, on_tag=refs)
        for a in op.get("args", []):
            self.args.append(self._one(dec, refs, a))
        for pair in op.get("kwargs", []):
            if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
                raise ProtocolError(f"{op['name']}: keyword arguments are [name, value] pairs")
            self.kwargs[pair[0]] = self._one(dec, refs, pair[1])

    def _one(self, dec: Decoder, refs: _Refs, node: Any) -> Any:
        start = len(refs.seen)
        x = dec.decode(node)
        got = refs.seen[start:]
        direct = isinstance(node, dict) and node.get("~") in ("ref", "res", "in") and len(got) == 1
        self.values.append(got[0] if direct else None)
        self.nested.append(bool(got) and not direct)
        self.nested_priv.append(not direct and any(v.private for v in got))
        if self.nested_priv[-1]:
            self.nested_private = True
        return x

    def twin(self, op: dict[str, Any], refs: _Refs, buffers: Sequence[Any]) -> _Args:
        """The same arguments with every stored value replaced by its public twin: a reference is
        swapped in place; only an argument with references nested inside is decoded again."""
        out = _Args(None, None, buffers)
        out.values, out.nested, out.nested_private = self.values, self.nested, self.nested_private
        out.nested_priv = self.nested_priv
        dec = Decoder(buffers, on_tag=refs)
        raw = [*op.get("args", []), *(pair[1] for pair in op.get("kwargs", []))]
        n = len(self.args)
        for i, x in enumerate(self.operands):
            v = self.values[i]
            y = v.public_view if v is not None else dec.decode(raw[i]) if self.nested[i] else x
            if i < n:
                out.args.append(y)
            else:
                out.kwargs[list(self.kwargs)[i - n]] = y
        return out

    @property
    def operands(self) -> list[Any]:
        return [*self.args, *self.kwargs.values()]


def _resolve_rule(kind: str, name: str, args: list[Any]) -> tuple[str, str, al.Rule]:
    """(kind, label, rule) of an op from its target's type; raises ``OpNotAllowed``."""
    target = args[0] if args else None
    label = name
    if kind in ("getattr", "method"):
        if not args:
            raise ProtocolError(f"{kind} {name} needs a target")
        key = type_key(target)
        label = f"{key}.{name}"
        rule = al.lookup(key, name)
        if kind == "getattr" and rule.kind == "method":
            kind = "bound"  # client asked for the attribute of something it will call: refused below
        if kind == "method" and rule.kind != "method":
            raise OpNotAllowed(f"{label} is an attribute, not a method", op=label)
        if kind == "getattr" and rule.kind != "attr":
            raise OpNotAllowed(f"{label} is a method: call it", op=label)
    elif kind == "function":
        rule = al.lookup("functions", name)
    else:
        rule = al.Rule("op", "same" if name in al.ELEMENTWISE_OPERATORS else None)
        if name == "getitem" and type_key(target) not in al.INDEXABLE:
            raise OpNotAllowed(f"{type_key(target)} cannot be indexed", op=f"{type_key(target)}[]")
    return kind, label, rule


# where a Python type (int, float, str, …) may stand: as a dtype, nowhere else (p[str], map(str))
_DTYPE_METHODS = frozenset({"astype", "view", "to", "type"})
_DTYPE_KWARGS = frozenset({"dtype", "include", "exclude"})


def _has_type(x: Any, depth: int = 0) -> bool:
    if isinstance(x, type):
        return True
    if isinstance(x, (list, tuple)) and depth < 3:
        return any(_has_type(v, depth + 1) for v in x[:10_000])
    if isinstance(x, dict) and depth < 3:
        return any(_has_type(v, depth + 1) or isinstance(k, type) for k, v in list(x.items())[:10_000])
    return False


def _check_types(label: str, kind: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    has_type = _has_type
    positional = args[1:] if kind in ("method", "getattr", "bound", "op") else args
    for i, a in enumerate(positional):
        if has_type(a) and not (
            kind == "method" and name in _DTYPE_METHODS and i == 0 and not isinstance(a, (list, tuple))
        ):
            raise InvalidArgument(
                f"{label}: a Python type is accepted only as a dtype (astype(int), dtype=float), "
                "not as a key, a function or a value",
                op=label,
            )
    for k, v in kwargs.items():
        if has_type(v) and k not in _DTYPE_KWARGS:
            raise InvalidArgument(
                f"{label}: a Python type is accepted only as a dtype (astype(int), dtype=float); {k}= takes no type",
                op=label,
            )


def _invoke(kind: str, name: str, label: str, rule: al.Rule, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Check an op's arguments against its rule and call it; the library's exceptions pass through."""
    al.check_kwargs(label, kwargs)
    if rule.check is not None:
        rule.check(label, tuple(args[1:] if kind in ("method", "bound") else args), kwargs)
    if kind == "bound":
        raise OpNotAllowed(f"{label} is a method: call it", op=label)
    target = args[0] if args else None
    if kind == "getattr":
        return getattr(target, name)
    if kind == "method" and label in REGEX_METHODS:  # RE2, never pandas' backtracking re
        fn, call_args = functools.partial(REGEX_METHODS[label], target), args[1:]
    elif kind == "method":
        fn, call_args = getattr(target, name), args[1:]
    elif kind == "function":
        fn, call_args = _module_function(name), args
    else:
        fn, call_args = al.OPERATORS[name], args
    if kind == "function" and name.startswith("numpy.") and not isinstance(fn, np.ufunc):
        # numpy would work on a stored tensor's own memory (torch cannot make it read-only)
        call_args = [_readonly_array(a) for a in call_args]
        kwargs = {k: _readonly_array(v) for k, v in kwargs.items()}
    al.check_writes(label, fn, call_args, kwargs)
    al.check_object_arrays(label, [target, *call_args] if kind == "method" else call_args, kwargs)
    return fn(*call_args, **kwargs)


def _columns_over(out: Any, limits: RunLimits | None) -> bool:
    return limits is not None and isinstance(out, pd.DataFrame) and out.shape[1] > limits.max_columns


def _public_call(
    kind: str,
    label: str,
    name: str,
    rule: al.Rule,
    args: _Args,
    limits: RunLimits | None,
    clock: list[float] | None,
    on_mock: bool,
) -> Any:
    """Run an op whose every input is public (plain public values, or the twins of private ones):
    its errors, its memory and its columns are public, its time counts toward the plan's limit."""
    t0 = time.monotonic()
    try:
        out = _invoke(kind, name, label, rule, args.args, args.kwargs)
    except SyftError:
        raise
    except MemoryError:
        raise QuotaExceeded(
            f"{label} needs more memory than the node allows on the mock data"
            if on_mock
            else f"{label} needs more memory than the node allows; work on a smaller part of the data",
            limit="memory",
            op=label,
        ) from None
    except Exception as e:  # about public data (or mocks): the library's text says nothing private
        text = (
            (
                f"{label} fails on the mock data, so it does not run on the private data: "
                f"{type(e).__name__}: {e} (try it on ptr.mock)"
            )
            if on_mock
            else f"{label} failed on the node: {type(e).__name__}: {e}"
        )
        raise RemoteError(text, op=label, exception=type(e).__name__) from None
    finally:
        if clock is not None:
            clock[0] += time.monotonic() - t0
    check_result(out, label)
    if _columns_over(out, limits):
        assert limits is not None
        raise QuotaExceeded(
            f"{label} would make a frame of more than {limits.max_columns:,} columns, more than the node allows",
            limit="columns",
            op=label,
        )
    return freeze(out)


def _run_op(
    op: dict[str, Any],
    resolve: Callable[[str], Value],
    results: list[Value],
    buffers: Sequence[Any],
    inputs: Sequence[Value] = (),
    limits: RunLimits | None = None,
    clock: list[float] | None = None,
) -> Value:
    kind, name = op["kind"], op["name"]
    refs = _Refs(resolve, results, inputs)
    real = _Args(op, refs, buffers)
    if any(v.private for v in refs.seen):
        return _run_private(op, kind, name, real, refs.seen, resolve, results, buffers, inputs, limits, clock)
    kind, label, rule = _resolve_rule(kind, name, real.args)
    _check_types(label, kind, name, real.args, real.kwargs)
    if limits is not None:
        _check_before(label, refs.seen, limits)
    out = _public_call(kind, label, name, rule, real, limits, clock, on_mock=False)
    return Value(out, frozenset(), _shape(out))


def _run_private(
    op: dict[str, Any],
    kind: str,
    name: str,
    real: _Args,
    seen: list[Value],
    resolve: Callable[[str], Value],
    results: list[Value],
    buffers: Sequence[Any],
    inputs: Sequence[Value],
    limits: RunLimits | None,
    clock: list[float] | None = None,
) -> Value:
    """An op on private data: decided on its public twin, computed on the data. Whatever the
    scientist sees (errors, types, labels, shapes) comes from the twin and the public shapes."""
    fast = _array_and_number(kind, name, real, seen, clock)
    if fast is not None:
        return fast
    if any(v.private and v.twin is NO_TWIN for v in seen):
        raise OpNotAllowed(
            f"{name}: this value came from a code run and has no mock to check ops against; "
            "ask for its release (ptr.request) and work on it once approved",
            op=name,
        )
    twin = real.twin(op, _Refs(resolve, results, inputs, twin=True), buffers)
    kind, label, rule = _resolve_rule(kind, name, twin.args)
    _check_types(label, kind, name, twin.args, twin.kwargs)
    check_private_sizes(kind, label, real.values, twin.operands, real.nested_priv)
    if limits is not None:
        _check_before(label, seen, limits)
    out_t = _public_call(kind, label, name, rule, twin, limits, clock, on_mock=True)
    out = first_failure([v.value for v in seen])  # a failed input: the result failed as well
    if out is None:
        try:
            out = _invoke(kind, name, label, rule, real.args, real.kwargs)
            check_result(out, label)
            if _columns_over(out, limits):
                assert limits is not None
                out = Failed(label, f"more than the node's {limits.max_columns:,} columns")
        except MemoryError:
            out = Failed(label, "MemoryError", "the node ran out of memory")
        except Exception as e:  # only on the real data: private, like a result
            out = Failed(label, type(e).__name__, f"{type(e).__name__}: {e}"[:2000])
    stable = stable_source(kind, label, twin.operands, real.values, real.nested_private, twin.kwargs)
    if MAY_LEAVE_GAPS.get(label.split(".", 1)[-1]) and isinstance(out_t, (pd.Series, pd.DataFrame)):
        # where() and // may leave gaps (NaN, inf) in an int or bool column, depending on the values:
        # both the twin and the data are widened to float64, by the op alone, so neither fails nor differs
        out_t = freeze(widen(out_t))
        if not isinstance(out, Failed):
            out = widen(out)
    conformed = conform(out, out_t, type_key, label)
    if stable is not None and isinstance(conformed, Failed) and first_failure([v.value for v in seen]) is None:
        # row-stable: a failure is made row-local (each failing row takes a default value), so one
        # person's values can change their own row only, never whether the whole value exists
        try:
            isolated = isolate_rows(kind, name, label, rule, real, out_t, _invoke, type_key)
        except Exception:  # never a different error than a success would give
            log.exception("isolating the failing rows of %s failed", label)
            isolated = None
        if isolated is None:
            try:
                isolated = all_defaults(real, out_t)
            except Exception:
                log.exception("no default rows for %s", label)
        if isolated is not None:
            conformed = isolated
    out = freeze(conformed)
    lineage = frozenset().union(*(v.lineage for v in seen))
    privates = [v is not None and v.private for v in real.values]
    known = [v.public_shape if v is not None else None for v in real.values]
    failed = isinstance(out, Failed)
    shape = _public_shape(
        None if failed else out,
        out_t,
        label,
        kind,
        rule,
        twin.operands,
        privates,
        known,
        _is_scalar(out_t),
        (lambda: _stand_in_result(kind, name, label, rule, twin, privates, known)) if failed else None,
    )
    labels = all(v.labels_public for v in seen if v.private)
    if labels and isinstance(out_t, (pd.DataFrame, pd.Series, pd.Index)):
        labels = labels_public(out_t, public_labels([v.public_view for v in seen], twin.operands))
    if shape is not None and len(shape) >= 1:
        rows = shape[0]
    else:  # an estimate: as many rows as the largest private input has (joins may pass it: capped)
        bounds = [v.public_shape[0] if v.public_shape else v.rows_bound for v in seen if v.private]
        rows = max((b for b in bounds if b is not None), default=None)
    value = Value(out, lineage, shape, out_t, stable, labels, rows)
    if over_cap(value):  # larger than its public size says: kept, the next quota refusal would tell
        value.value = Failed(label, "a result larger than its public size estimate", f"{nbytes(out)} bytes")
    return value


def _array_and_number(kind: str, name: str, real: _Args, seen: list[Value], clock: list[float] | None) -> Value | None:
    """``ptr + 1`` and its kind: an arithmetic or comparison operator between one private
    numeric array and a public Python number, the commonest op there is. The general path's
    checks all pass trivially here (no types, no sizes, no writes, no objects), so it is done
    directly: the twin first (its error, if any, is the public one), then the data."""
    if kind != "op" or name not in al.ELEMENTWISE_OPERATORS or len(real.args) != 2 or real.kwargs or len(seen) != 1:
        return None
    v, k = seen[0], real.args[1]
    twin = v.twin
    if (
        real.values[0] is not v
        or type(k) not in (int, float, bool)
        or type(twin) is not np.ndarray
        or type(v.value) is not np.ndarray
        or twin.dtype.kind not in "biuf"
        or v.value.dtype != twin.dtype
    ):
        return None
    fn = al.OPERATORS[name]
    t0 = time.monotonic()
    try:
        out_t = fn(twin, k)
    except Exception:
        return None  # the general path says why, from the twin
    finally:
        if clock is not None:
            clock[0] += time.monotonic() - t0
    if type(out_t) is not np.ndarray:
        return None
    try:
        out = fn(v.value, k)
    except Exception as e:
        out = Failed(name, type(e).__name__, f"{type(e).__name__}: {e}"[:2000])
    if not isinstance(out, Failed) and out.dtype != out_t.dtype:
        out = conform(out, out_t, type_key, name)
    freeze(out_t)
    freeze(out)
    shape = v.public_shape
    stable = v.stable if name != "pow" else None
    return Value(out, v.lineage, shape, out_t, stable, True, shape[0] if shape else v.rows_bound)


def _stand_in_result(
    kind: str,
    name: str,
    label: str,
    rule: al.Rule,
    twin: _Args,
    privates: list[bool],
    known: list[tuple[int, ...] | None],
) -> Any:
    """The op on memoryless stand-ins of its private arrays (their public shapes, the twins'
    dtypes): what a success on the data would have looked like, shape-wise; None if unknown."""
    if label in _TO_ARRAY:
        return np.broadcast_to(np.zeros((), dtype=np.int8), known[0]) if known[0] is not None else None
    ops = twin.operands
    swapped = []
    for i, x in enumerate(ops):
        if privates[i]:
            if known[i] is None:
                return None
            y = stand_in(x, known[i])
            if y is None:
                return None
            swapped.append(y)
        else:
            swapped.append(x)
    n = len(twin.args)
    try:
        return _invoke(kind, name, label, rule, swapped[:n], dict(zip(twin.kwargs, swapped[n:])))
    except Exception:
        return None


def _is_scalar(x: Any) -> bool:
    return isinstance(x, _SCALARS) and not isinstance(x, (str, bytes)) or (isinstance(x, np.ndarray) and x.ndim == 0)


# ops whose result has as many columns as their input has rows
_ROWS_BECOME_COLUMNS = frozenset({"DataFrame.T", "DataFrame.transpose", "Series.T", "Series.transpose"})


def _check_before(label: str, seen: list[Value], limits: RunLimits) -> None:
    """Refuse, before it runs, an op whose result would pass the node's limits; decided from
    public shapes only, so whether it is refused never depends on private values."""
    if label in _ROWS_BECOME_COLUMNS and seen and isinstance(seen[0].value, pd.DataFrame):
        target = seen[0]
        rows = target.public_shape[0] if target.public_shape else None
        if not target.private:
            rows = len(target.value)
        if rows is None or rows > limits.max_columns:
            raise QuotaExceeded(
                f"{label} turns rows into columns: the node allows it on frames of at most "
                f"{limits.max_columns:,} rows whose row count is public (this one's is "
                f"{'private' if rows is None else f'{rows:,}'}); aggregate first",
                limit="columns",
                op=label,
            )


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None and isinstance(value, _SCALARS):
        return ()
    try:
        return tuple(int(s) for s in shape) if shape is not None else None
    except TypeError:
        return None


def _meta_of(value: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": type_key(value)}
    if isinstance(value, pd.DataFrame):
        meta["columns"] = [_label(c) for c in value.columns]
        meta["dtypes"] = [str(t) for t in value.dtypes]
    elif isinstance(value, (pd.Series, pd.Index)):
        meta["dtype"] = str(value.dtype)
        meta["name"] = _label(value.name)
    elif hasattr(value, "dtype") and not isinstance(value, type):
        meta["dtype"] = str(value.dtype).removeprefix("torch.")
    if hasattr(value, "ndim") and not isinstance(value, type):
        try:
            meta["ndim"] = int(value.ndim)
        except TypeError:
            pass
    return meta


def describe(v: Value, reveal: bool) -> dict[str, Any]:
    """Public metadata for a pointer: type, shape (if public), dtype(s), columns, name. For a
    private value the reader may not see, all of it comes from its public twin and public
    shapes, never from the data; labels that come from values are left out."""
    if reveal or not v.private:
        if isinstance(v.value, Failed):  # the owner's (or an approved reader's) view of a failure
            meta = _meta_of(v.twin) if v.twin is not NO_TWIN else {"type": None}
            meta.update(private=v.private, shape=None, failed=v.value.public_text())
            return meta
        meta = _meta_of(v.value)
        meta["private"] = v.private
        shape = _shape(v.value)
        meta["shape"] = list(shape) if shape is not None else None
        return meta
    if v.twin is NO_TWIN:  # a code run's result: nothing about it is public
        return {"type": None, "private": True, "shape": None}
    meta = _meta_of(v.twin)
    meta["private"] = True
    meta["shape"] = list(v.public_shape) if v.public_shape is not None else None
    if not v.labels_public:
        for k in ("columns", "dtypes", "name"):
            meta.pop(k, None)
        meta["labels"] = "private: they come from the data's values, not its schema"
    return meta


def _label(x: Any) -> Any:
    if isinstance(x, tuple):
        return [_label(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x.item() if isinstance(x, np.generic) else x
    return str(x)


__all__ = [
    "Value",
    "run_plan",
    "describe",
    "type_key",
    "check_result",
    "InvalidArgument",
    "NO_TWIN",
    "Failed",
    "charge",
]
