"""Pointers: local handles to values that live on a node.

A pointer carries public metadata (type, shape where public, dtype, columns) and turns
operators, attribute access, indexing, method calls and numpy / torch functions into ops that
run on the node. Each result is a new pointer; ``get()`` returns the value when permitted;
``del ptr`` frees the remote object. ``ptr.mock`` is the same computation on mock data, locally.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .core import codec, schema
from .core.errors import InvalidArgument, OpNotAllowed, PermissionDenied

if TYPE_CHECKING:
    from .client import Client

# the allowlist is shared with the node: the client uses it to tell methods from attributes
from syft_kernel.core import allowlist as _al  # noqa: E402

LOCAL_META = frozenset({"shape", "columns", "dtypes", "dtype", "ndim", "name"})


class Pointer:
    """A handle to an object on a node. Build one from a dataset (``ds.datasets[...][...]``)."""

    def __init__(
        self,
        client: Client,
        obj_id: str | None,
        meta: dict[str, Any] | None,
        label: str | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        self._client = client
        self._id = obj_id
        self._meta = meta
        self._label = label or obj_id
        self._recipe = recipe or Recipe(client, asset=obj_id)
        self._batch: Any = None  # the Batch (or plan Trace) this pointer's op waits in
        self._index = -1
        self._error: BaseException | None = None

    # ---- lazy state: a pointer recorded in a batch gets its id when the batch is sent
    def _resolve(self, obj_id: str, meta: dict[str, Any]) -> None:
        self._id, self._meta, self._batch = obj_id, meta, None

    def _fail(self, error: BaseException) -> None:
        self._error, self._batch = error, None

    def _settle(self) -> None:
        if self._id is None and self._error is None and self._batch is not None:
            self._batch.flush()
        if self._error is not None:
            raise self._error
        if self._id is None:
            raise InvalidArgument("this pointer belongs to a plan being traced; call the plan to get real results")

    @property
    def id(self) -> str:
        """The object's id on the node (sends the pending batch first, if any)."""
        self._settle()
        return self._id  # type: ignore[return-value]

    @property
    def meta(self) -> dict[str, Any]:
        """Public metadata from the node (sends the pending batch first, if any)."""
        self._settle()
        return self._meta  # type: ignore[return-value]

    @property
    def pending(self) -> bool:
        """True while the op that makes this value is recorded but not yet sent."""
        return self._id is None and self._error is None

    # ---- metadata (local, no round trip)
    @property
    def type(self) -> str:
        """The pointed-to value's type name (DataFrame, Series, ndarray, Tensor, …)."""
        if self._meta is not None:
            return str(self._meta.get("type"))
        from syft_kernel.core.executor import type_key

        return type_key(self.mock)  # the mock has the same type: no round trip while recording

    @property
    def private(self) -> bool:
        """Whether the value derives from private data (then it stays on the node until released)."""
        return bool(self.meta.get("private"))

    @property
    def shape(self) -> Any:
        """The shape if it is public; otherwise a pointer to it (private like the data)."""
        shape = self.meta.get("shape")
        if shape is None:
            return self._remote("getattr", "shape")
        return tuple(shape)

    @property
    def columns(self) -> pd.Index:
        """A frame's columns, where they are public."""
        if "columns" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no columns")
        return pd.Index([tuple(c) if isinstance(c, list) else c for c in self.meta["columns"]])

    @property
    def dtypes(self) -> pd.Series:
        """A frame's column dtypes, where they are public."""
        if "dtypes" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no dtypes")
        return pd.Series(self.meta["dtypes"], index=self.columns, dtype=object)

    @property
    def dtype(self) -> str:
        """An array's, tensor's or series' dtype."""
        if "dtype" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no dtype")
        return str(self.meta["dtype"])

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return int(self.meta.get("ndim", 0))

    @property
    def name(self) -> Any:
        """A series' name, where it is public."""
        if "name" not in self.meta:
            return self._remote("getattr", "name")
        return self.meta["name"]

    @property
    def client(self) -> Client:
        """The connection this pointer's value lives behind."""
        return self._client

    # ---- recording ops
    def _remote(
        self, kind: str, name: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Pointer:
        return remote_op(
            self._client, kind, name, (self, *args) if kind in ("getattr", "method") else args, kwargs or {}
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        kind = _al.KIND_BY_NAME.get(name) if self._meta is None else None
        if kind is None:  # the node's own table: refused here with the same error
            kind = _al.lookup(self.type, name).kind
        if kind == "method":
            return _Method(self, name)
        return self._remote("getattr", name)

    def __getitem__(self, key: Any) -> Pointer:
        return remote_op(self._client, "op", "getitem", (self, key), {})

    # ---- values
    def get(self) -> Any:
        """The value, if you may read it (the owner always may); else ``PermissionDenied``."""
        body, buffers = self._client.call(schema.Get(id=self.id))
        return codec.decode_value(body["value"], buffers)

    def request(self, reason: str) -> Any:
        """Ask the data owner(s) to release this value to you; returns a ``Request`` to follow
        (``req.status``, ``req.wait()``); once approved, ``get()`` works for this object.
        """
        from .requests import request_object

        return request_object(self, reason)

    @property
    def dp(self) -> Any:
        """Differentially private releases of this value, charged to your budget: ``ptr.dp.mean(…)``."""
        from .dp import DPQueries

        return DPQueries(self)

    @property
    def mock(self) -> Any:
        """The pointer's computation on mock data, run locally: free, fake, for debugging."""
        return self._recipe.mock()

    def _private_in_python(self, what: str) -> Any:
        """The value for Python itself (``if``, ``len``, ``print``): fetched when you may read
        it (public, owner, or released by an approval); else an error that says why and what to do.
        """
        try:
            return self.get()
        except PermissionDenied:
            raise PermissionDenied(
                f"{what} needs the value, and this {self.type} is private: it lives on "
                f"{self._client.node_label} and only its pointer is here. Use pointer operations "
                "(they run on the node), ask for release with ptr.request(reason='…'), use a DP "
                "query (ptr.dp…), or inspect ptr.mock locally.",
                request_hint="ptr.request(reason='…')",
            ) from None

    def __bool__(self) -> bool:
        return bool(self._private_in_python("bool(ptr) / if ptr"))

    def __len__(self) -> int:
        shape = self.meta.get("shape")
        if shape:
            return int(shape[0])
        return len(self._private_in_python("len(ptr)"))

    def __iter__(self) -> Any:
        return iter(self._private_in_python("iterating over ptr"))

    def __float__(self) -> float:
        return float(self._private_in_python("float(ptr)"))

    def __int__(self) -> int:
        return int(self._private_in_python("int(ptr)"))

    def __index__(self) -> int:
        return operator.index(self._private_in_python("using ptr as an index"))

    __hash__ = object.__hash__

    def __str__(self) -> str:
        return str(self._private_in_python("print(ptr) / str(ptr)"))

    def _repr_html_(self) -> str:
        import html

        text = html.escape(repr(self))
        try:
            if not self._recipe.cheap_mock():
                raise LookupError  # a long recorded chain: no preview rather than a slow display
            preview = self.mock
            body = (
                preview.head(5)._repr_html_()
                if hasattr(preview, "head") and hasattr(preview, "_repr_html_")
                else f"<pre>{html.escape(repr(preview))[:2000]}</pre>"
            )
        except Exception:  # a mock that cannot be built must not break the display
            body = ""
        note = "<div style='color:#888'>mock preview (synthetic values, not the data)</div>" if body else ""
        return f"<pre>{text}</pre>{note}{body}"

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise OpNotAllowed(
            "a pointer cannot be pickled or saved (torch.save, pickle, joblib): its value lives on "
            f"{self._client.node_label}; save the result of ptr.get() once you may read it",
            op="pickle",
        )

    # ---- numpy and torch dispatch
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__":
            return NotImplemented
        return remote_op(self._client, "function", f"numpy.{ufunc.__name__}", inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        module = getattr(func, "__module__", "numpy") or "numpy"
        return remote_op(self._client, "function", f"{module}.{func.__name__}", args, kwargs)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        ptr = next(a for a in _walk(args) if isinstance(a, Pointer))
        return remote_op(ptr._client, "function", _torch_name(func), args, kwargs or {})

    # ---- lifetime and display
    def __del__(self) -> None:
        try:
            if self._id is not None and not self._id.startswith("asset:"):
                self._client.free(self._id)
        except Exception:  # interpreter shutdown or a closed client: nothing left to free
            pass

    def __repr__(self) -> str:
        if self._error is not None:
            return f"<failed pointer on {self._client.node_label}: {self._error}>"
        if self._meta is None and self._batch is not None and getattr(self._batch, "tracing", False):
            return f"<{self.type} pointer being traced into a plan>"
        parts = [f"{self.type} pointer on {self._client.node_label}"]
        shape = self.meta.get("shape")
        if shape is not None:
            parts.append(f"shape {tuple(shape)}")
        if "dtype" in self.meta:
            parts.append(f"dtype {self.meta['dtype']}")
        parts.append("private" if self.private else "public")
        text = f"<{' · '.join(parts)}>"
        if "columns" in self.meta:
            cols = ", ".join(f"{c}: {t}" for c, t in zip(self.meta["columns"], self.meta.get("dtypes", [])))
            text += f"\n  columns: {cols}"
        return text


class Recipe:
    """How a pointer's value was made (an op over parent recipes, or an asset), kept so the same
    computation can run on mock data. Holds no remote object: freeing pointers stays prompt.
    """

    _keys = itertools.count()

    def __init__(
        self,
        client: Client,
        asset: str | None = None,
        op: dict[str, Any] | None = None,
        buffers: list[Any] | None = None,
        parents: tuple[Recipe, ...] = (),
    ) -> None:
        self.client = client
        self.key = f"m{next(self._keys)}"
        self.asset = asset
        self.op = op
        self.buffers = buffers or []
        self.parents = parents
        self._mock: Any = None
        self._mock_fn: Callable[[], Any] | None = None

    def _own_mock(self, parents: dict[str, Any]) -> Any:
        """The step's mock, given its parents' mocks."""
        if self._mock_fn is not None:
            return self._mock_fn()
        if self.asset is not None and self.asset.startswith("asset:"):
            dataset, _, asset = self.asset[6:].partition("/")
            return self.client.datasets.mock(dataset, asset)  # cached by the client
        if self.op is None:
            raise InvalidArgument("this value came from a code run: it has no computation to replay on mock data")
        from syft_kernel.core.executor import Value, run_plan

        values = {key: Value(v) for key, v in parents.items()}
        return run_plan([self.op], values.__getitem__, self.buffers)[0].value

    def mock(self) -> Any:
        """Replay the chain on mocks, oldest step first (no recursion, nothing kept but the result)."""
        if self._mock is not None:
            return self._mock
        order: list[Recipe] = []
        seen: set[str] = set()
        stack: list[tuple[Recipe, bool]] = [(self, False)]
        while stack:
            r, expanded = stack.pop()
            if r.key in seen:
                continue
            if expanded or r._mock is not None or r.op is None:
                seen.add(r.key)
                order.append(r)
                continue
            stack.append((r, True))
            stack.extend((p, False) for p in r.parents if p.key not in seen)
        values: dict[str, Any] = {}
        for r in order:
            values[r.key] = r._mock if r._mock is not None else r._own_mock({p.key: values[p.key] for p in r.parents})
        self._mock = values[self.key]
        return self._mock

    def cheap_mock(self, limit: int = 12) -> bool:
        """True when the mock is known, or a few steps away from known mocks."""
        todo, steps, seen = [self], 0, set()
        while todo:
            r = todo.pop()
            if r.key in seen or r._mock is not None or r.op is None:
                continue
            seen.add(r.key)
            steps += 1
            if steps > limit:
                return False
            todo.extend(r.parents)
        return True


class _Method:
    """A bound remote method: calling it records the call."""

    def __init__(self, ptr: Pointer, name: str) -> None:
        self._ptr = ptr
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Pointer:
        return self._ptr._remote("method", self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._ptr.type}.{self._name} on {self._ptr._client.node_label}>"


def _walk(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _walk(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    else:
        yield x


def _torch_name(func: Any) -> str:
    import torch
    import torch.nn.functional as F

    name = getattr(func, "__name__", "")
    if getattr(torch, name, None) is func:
        return f"torch.{name}"
    if getattr(F, name, None) is func:
        return f"torch.nn.functional.{name}"
    return f"torch.{name}"


def remote_op(client: Client, kind: str, name: str, args: Any, kwargs: dict[str, Any]) -> Pointer:
    """Record one op: sent at once (one round trip) or, inside a batch, with the batch."""
    from .batch import current

    recorder = current(client)
    parents: list[Pointer] = []
    wire = recorder.encoder if recorder is not None else codec.Encoder()
    wire.on_object = _pointer_hook(client, parents, lambda p: _wire_ref(p, recorder))
    local = codec.Encoder(on_object=_pointer_hook(client, [], lambda p: {codec.TAG: "ref", "id": p._recipe.key}))
    op = {
        "kind": kind,
        "name": name,
        "args": [wire.encode(a) for a in args],
        "kwargs": [[k, wire.encode(v)] for k, v in kwargs.items()],
    }
    mock_op = {
        "kind": kind,
        "name": name,
        "args": [local.encode(a) for a in args],
        "kwargs": [[k, local.encode(v)] for k, v in kwargs.items()],
    }
    recipe = Recipe(client, op=mock_op, buffers=local.buffers, parents=tuple(p._recipe for p in parents))
    if recorder is not None:
        ptr = Pointer(client, None, None, f"{name}(…)", recipe)
        ptr._batch = recorder
        ptr._index = recorder.record(op, ptr)
        return ptr
    body, _ = client.call(schema.Run(ops=[op], keep=[0]), buffers=wire.buffers)
    result = body["results"][0]
    client.last_plan = [op]
    return Pointer(client, result["id"], result["meta"], f"{name}(…)", recipe)


def _wire_ref(p: Pointer, recorder: Any) -> dict[str, Any]:
    """How an argument pointer appears in the op on the wire."""
    if recorder is not None:
        if p._batch is recorder and p._id is None and p._error is None:
            return {codec.TAG: "res", "i": p._index}
        inputs = getattr(recorder, "inputs", None)
        if inputs is not None and id(p) in inputs:
            return {codec.TAG: "in", "i": inputs[id(p)]}
    return {codec.TAG: "ref", "id": p.id}


def _pointer_hook(client: Client, parents: list[Pointer], ref: Callable[[Pointer], dict[str, Any]]) -> Any:
    def on_object(obj: Any) -> Any:
        if isinstance(obj, Pointer):
            if obj._client is not client:
                raise InvalidArgument("pointers from two different nodes (or logins) cannot be combined in one op")
            parents.append(obj)
            return ref(obj)
        if callable(obj):
            raise OpNotAllowed(
                f"cannot send the function {getattr(obj, '__name__', obj)!r} to a node: functions never "
                "travel (apply / map / agg with a callable are refused); use a method name string like "
                "agg('mean'), or a reviewed code request",
                op="callable argument",
            )
        raise InvalidArgument(f"cannot send a {type(obj).__module__}.{type(obj).__qualname__} to a node")

    return on_object


def _binary(name: str, reflected: bool = False) -> Any:
    def fn(self: Pointer, other: Any) -> Pointer:
        args = (other, self) if reflected else (self, other)
        return remote_op(self._client, "op", name, args, {})

    return fn


def _unary(name: str) -> Any:
    def fn(self: Pointer) -> Pointer:
        return remote_op(self._client, "op", name, (self,), {})

    return fn


for _dunder, _opname in {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "truediv": "truediv",
    "floordiv": "floordiv",
    "mod": "mod",
    "pow": "pow",
    "matmul": "matmul",
    "and": "and_",
    "or": "or_",
    "xor": "xor",
    "lshift": "lshift",
    "rshift": "rshift",
}.items():
    setattr(Pointer, f"__{_dunder}__", _binary(_opname))
    setattr(Pointer, f"__r{_dunder}__", _binary(_opname, reflected=True))
for _dunder in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(Pointer, f"__{_dunder}__", _binary(_dunder))
for _dunder, _opname in {"neg": "neg", "pos": "pos", "abs": "abs", "invert": "invert"}.items():
    setattr(Pointer, f"__{_dunder}__", _unary(_opname))
