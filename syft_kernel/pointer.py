"""Pointers: local handles to values that live on a node.

A pointer carries public metadata (type, shape where public, dtype, columns) and turns
operators, attribute access, indexing, method calls and numpy / torch functions into ops that
run on the node. Each result is a new pointer; ``get()`` returns the value when permitted;
``del ptr`` frees the remote object. ``ptr.mock`` is the same computation on mock data, locally.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import codec
from .errors import InvalidArgument, OpNotAllowed, PermissionDenied

if TYPE_CHECKING:
    from .client import Client

# the allowlist is shared with the node: the client uses it to tell methods from attributes
from syft_kernel.node import allowlist as _al  # noqa: E402

LOCAL_META = frozenset({"shape", "columns", "dtypes", "dtype", "ndim", "name"})


class Pointer:
    """A handle to an object on a node. Build one from a dataset (``ds.datasets[...][...]``)."""

    def __init__(self, client: Client, obj_id: str, meta: dict[str, Any], label: str | None = None,
                 recipe: Recipe | None = None) -> None:
        self._client = client
        self.id = obj_id
        self.meta = meta
        self._label = label or obj_id
        self._recipe = recipe or Recipe(client, obj_id)

    # ---- metadata (local, no round trip)
    @property
    def type(self) -> str:
        return str(self.meta.get("type"))

    @property
    def private(self) -> bool:
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
        if "columns" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no columns")
        return pd.Index([tuple(c) if isinstance(c, list) else c for c in self.meta["columns"]])

    @property
    def dtypes(self) -> pd.Series:
        if "dtypes" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no dtypes")
        return pd.Series(self.meta["dtypes"], index=self.columns, dtype=object)

    @property
    def dtype(self) -> str:
        if "dtype" not in self.meta:
            raise AttributeError(f"a {self.type} pointer has no dtype")
        return str(self.meta["dtype"])

    @property
    def ndim(self) -> int:
        return int(self.meta.get("ndim", 0))

    @property
    def name(self) -> Any:
        if "name" not in self.meta:
            return self._remote("getattr", "name")
        return self.meta["name"]

    @property
    def client(self) -> Client:
        return self._client

    # ---- recording ops
    def _remote(self, kind: str, name: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Pointer:
        return remote_op(self._client, kind, name, (self, *args) if kind in ("getattr", "method") else args,
                         kwargs or {})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        rule = _al.TABLE.get(self.type, {}).get(name)
        if rule is not None and rule.kind == "method":
            return _Method(self, name)
        return self._remote("getattr", name)

    def __getitem__(self, key: Any) -> Pointer:
        return remote_op(self._client, "op", "getitem", (self, key), {})

    # ---- values
    def get(self) -> Any:
        """The value, if you may read it (the owner always may); else ``PermissionDenied``."""
        body, buffers = self._client.call("get", {"id": self.id})
        return codec.decode_value(body["value"], buffers)

    def request(self, reason: str) -> Any:
        """Ask the data owner(s) to release this value to you; returns a ``Request`` to follow
        (``req.status``, ``req.wait()``); once approved, ``get()`` works for this object."""
        from .requests import request_object

        return request_object(self, reason)

    @property
    def mock(self) -> Any:
        """This pointer's computation on mock data, run locally: free, fake, for debugging."""
        return self._recipe.mock()

    def _private_in_python(self, what: str) -> Any:
        if self.private and self._client.role != "owner":
            raise PermissionDenied(
                f"{what} needs the value, and this {self.type} is private: it lives on "
                f"{self._client.node_label} and only its pointer is here. Use pointer operations "
                "(they run on the node), ask for release with ptr.request(reason='…'), or inspect "
                "ptr.mock locally.",
                request_hint="ptr.request(reason='…')",
            )
        return self.get()

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
            if not self.id.startswith("asset:"):
                self._client.free(self.id)
        except Exception:  # interpreter shutdown or a closed client: nothing left to free
            pass

    def __repr__(self) -> str:
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
    computation can run on mock data. Holds no remote object: freeing pointers stays prompt."""

    def __init__(self, client: Client, obj_id: str, op: dict[str, Any] | None = None,
                 parents: tuple[Recipe, ...] = ()) -> None:
        self.client = client
        self.id = obj_id
        self.op = op
        self.parents = parents
        self._mock: Any = None

    def mock(self) -> Any:
        if self._mock is None:
            if self.id.startswith("asset:"):
                dataset, _, asset = self.id[6:].partition("/")
                self._mock = self.client.datasets.mock(dataset, asset)
            elif self.op is not None:
                from syft_kernel.node.executor import Value, run_plan

                mocks = {p.id: Value(p.mock()) for p in self.parents}
                self._mock = run_plan([self.op], mocks.__getitem__)[0].value
            else:
                raise InvalidArgument("this pointer has no recorded computation to replay on mock data")
        return self._mock


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
    """Run one op on the node now (one round trip) and return the result's pointer."""
    parents: list[Pointer] = []
    enc = codec.Encoder(on_object=_pointer_hook(client, parents))
    op = {
        "kind": kind,
        "name": name,
        "args": [enc.encode(a) for a in args],
        "kwargs": [[k, enc.encode(v)] for k, v in kwargs.items()],
    }
    body, _ = client.call("run", {"ops": [op], "keep": [0]}, enc.buffers)
    result = body["results"][0]
    recipe = Recipe(client, result["id"], op if not enc.buffers else None, tuple(p._recipe for p in parents))
    return Pointer(client, result["id"], result["meta"], f"{name}(…)", recipe)


def _pointer_hook(client: Client, parents: list[Pointer]) -> Any:
    def on_object(obj: Any) -> Any:
        if isinstance(obj, Pointer):
            if obj._client is not client:
                raise InvalidArgument("pointers from two different nodes (or logins) cannot be combined in one op")
            parents.append(obj)
            return {codec.TAG: "ref", "id": obj.id}
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
    "add": "add", "sub": "sub", "mul": "mul", "truediv": "truediv", "floordiv": "floordiv",
    "mod": "mod", "pow": "pow", "matmul": "matmul", "and": "and_", "or": "or_", "xor": "xor",
    "lshift": "lshift", "rshift": "rshift",
}.items():
    setattr(Pointer, f"__{_dunder}__", _binary(_opname))
    setattr(Pointer, f"__r{_dunder}__", _binary(_opname, reflected=True))
for _dunder in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(Pointer, f"__{_dunder}__", _binary(_dunder))
for _dunder, _opname in {"neg": "neg", "pos": "pos", "abs": "abs", "invert": "invert"}.items():
    setattr(Pointer, f"__{_dunder}__", _unary(_opname))
