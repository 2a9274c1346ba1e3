"""A torch model as data: a graph of allowlisted ops (``fl_ops``) plus its weights as safetensors.

The client traces a ``torch.nn.Module`` with ``torch.fx`` and writes what the trace found as a
plain map: the input, the modules called (by type and constructor arguments), the model's own
tensors, and the steps, each naming one allowed module, function or tensor method with its
arguments. ``check_graph`` judges such a map without torch (the node does this before a request
is filed) and says what the weights must be. ``GraphModel`` builds the modules from their
arguments and runs the steps with an interpreter of its own: nothing is unpickled, and no code
is generated or run from the graph (``torch.fx``'s own code generation is used only by the
client, on its own model).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, OpNotAllowed
from .fl_ops import (
    FUNCTIONS,
    GETATTR_NAMES,
    METHODS,
    POSITIONAL_LIMIT,
    REFUSED_KWARGS,
    RESERVED_NAMES,
    module_args,
    module_state,
)

if TYPE_CHECKING:
    import torch

VERSION = 1
MAX_NODES = 4096
MAX_MODULES = 1024
MAX_DEPTH = 6
MAX_ITEMS = 64
MAX_WEIGHT_ENTRIES = 4096
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
_NAME = re.compile(r"\A[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")
_OPS = ("placeholder", "get_attr", "call_module", "call_function", "call_method", "output")


@dataclass(frozen=True)
class CheckedGraph:
    """A graph that passed ``check_graph``, with the weights it takes (name → shape, dtype)."""

    graph: dict[str, Any]
    weights: dict[str, tuple[tuple[int, ...], str]]
    trainable: frozenset[str]
    parameters: int  # trainable numbers

    def lines(self) -> list[str]:
        """The graph as readable lines, for the owner who reviews it."""
        return describe(self.graph)


def _name(what: str, v: Any, path: bool = False) -> str:
    if not isinstance(v, str) or len(v) > 200 or not _NAME.match(v):
        raise InvalidArgument(f"{what} must be a dotted name of letters, digits and underscores, not {v!r}"[:300])
    bad = [p for p in v.split(".") if p.startswith("__") or p in RESERVED_NAMES] if path else []
    if bad:
        raise InvalidArgument(
            f"{what} {v!r} uses the name {bad[0]!r}, which torch.nn.Module keeps for itself: rename it"
        )
    return v


def _check_value(v: Any, seen: set[str], depth: int = 0) -> None:
    """An argument: a constant, a reference to an earlier step, or a few containers of those."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"a step's arguments nest more than {MAX_DEPTH} deep")
    if v is None or type(v) in (bool, int):
        if type(v) is int and abs(v) > 1 << 62:
            raise InvalidArgument("an integer argument is out of range")
        return
    if type(v) is float:
        return
    if type(v) is str:
        if len(v) > 200:
            raise InvalidArgument("a text argument is at most 200 characters")
        return
    if type(v) is list:
        if len(v) > MAX_ITEMS:
            raise InvalidArgument(f"an argument list has at most {MAX_ITEMS} items")
        for x in v:
            _check_value(x, seen, depth + 1)
        return
    if type(v) is dict and len(v) == 1:
        ((key, inner),) = v.items()
        if key == "ref":
            if not isinstance(inner, str) or inner not in seen:
                raise InvalidArgument(f"a step refers to {str(inner)[:100]!r}, which no earlier step made")
            return
        if key in ("tuple", "slice") and type(inner) is list:
            if key == "slice" and len(inner) != 3:
                raise InvalidArgument("a slice has a start, a stop and a step")
            _check_value(inner, seen, depth)
            return
        if key == "ellipsis" and inner is True:
            return
        if key == "dtype" and inner in DTYPES:
            return
    raise InvalidArgument(f"an argument cannot be {str(v)[:100]!r}: constants, steps and lists of them only")


def check_graph(graph: Any, max_parameters: int = 100_000_000) -> CheckedGraph:
    """Judge a model graph (no torch needed): every op allowed, every reference sound, and the
    weights it takes. Raises ``OpNotAllowed`` naming a forbidden op, else ``InvalidArgument``."""
    if not isinstance(graph, dict) or graph.get("version") != VERSION:
        raise InvalidArgument(f"a model graph is a map of version {VERSION} (made by sk.fl from a torch model)")
    if set(graph) != {"version", "modules", "tensors", "nodes"}:
        raise InvalidArgument("a model graph has the keys version, modules, tensors and nodes")
    modules, tensors, nodes = graph["modules"], graph["tensors"], graph["nodes"]
    if not isinstance(modules, dict) or len(modules) > MAX_MODULES:
        raise InvalidArgument(f"a model graph has at most {MAX_MODULES} modules")
    if not isinstance(tensors, dict) or len(tensors) > MAX_WEIGHT_ENTRIES:
        raise InvalidArgument(f"a model graph has at most {MAX_WEIGHT_ENTRIES} tensors of its own")
    if not isinstance(nodes, list) or not 2 <= len(nodes) <= MAX_NODES:
        raise InvalidArgument(f"a model graph has from 2 to {MAX_NODES} steps")
    weights: dict[str, tuple[tuple[int, ...], str]] = {}
    trainable: set[str] = set()
    for path, m in modules.items():
        _name("a module's path", path, path=True)
        if not isinstance(m, dict) or set(m) != {"type", "args"} or not isinstance(m["type"], str):
            raise InvalidArgument(f"module {path!r} is a map of its type and its args")
        for k, shape in module_state(m["type"], m["args"]).items():
            dtype = "int64" if k == "num_batches_tracked" else "float32"
            weights[f"{path}.{k}"] = (tuple(shape), dtype)
            if dtype == "float32" and not k.startswith("running_"):
                trainable.add(f"{path}.{k}")
    for name, t in tensors.items():
        _name("a tensor's name", name, path=True)
        if not isinstance(t, dict) or set(t) != {"shape", "dtype", "trainable"}:
            raise InvalidArgument(f"tensor {name!r} is a map of its shape, dtype and trainable")
        shape = t["shape"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(type(s) is int and 0 <= s < 1 << 24 for s in shape):
            raise InvalidArgument(f"tensor {name!r} has a shape of at most 8 sizes")
        if t["dtype"] not in DTYPES or type(t["trainable"]) is not bool:
            raise InvalidArgument(f"tensor {name!r} has a dtype among {', '.join(DTYPES)} and trainable true or false")
        if t["trainable"] and t["dtype"] != "float32":
            raise InvalidArgument(f"tensor {name!r} is trainable, so it is float32")
        if name in weights:
            raise InvalidArgument(f"tensor {name!r} is also a module's weight")
        weights[name] = (tuple(shape), t["dtype"])
        if t["trainable"]:
            trainable.add(name)
    total = sum(math.prod(weights[k][0]) for k in trainable)
    if total > max_parameters:
        raise InvalidArgument(f"the model has {total:,} parameters; this node trains at most {max_parameters:,}")
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or set(node) != {"name", "op", "target", "args", "kwargs"}:
            raise InvalidArgument(f"step {i} is a map of name, op, target, args and kwargs")
        name, op, target, args, kwargs = (node[k] for k in ("name", "op", "target", "args", "kwargs"))
        _name(f"step {i}'s name", name)
        if name in seen:
            raise InvalidArgument(f"two steps are named {name!r}")
        if op not in _OPS or not isinstance(target, str) or type(args) is not list or type(kwargs) is not dict:
            raise InvalidArgument(f"step {name!r} has an op among {', '.join(_OPS)}, a target, args and kwargs")
        if (op == "placeholder") != (i == 0) or (op == "output") != (i == len(nodes) - 1):
            raise InvalidArgument("a model graph takes one input (its first step) and ends with its output")
        if len(args) > MAX_ITEMS or len(kwargs) > MAX_ITEMS:
            raise InvalidArgument(f"step {name!r} has at most {MAX_ITEMS} arguments")
        _check_value(args, seen)
        for k, v in kwargs.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise InvalidArgument(f"step {name!r} has a keyword that is not a name")
            if k in REFUSED_KWARGS and v not in (None, False):
                raise OpNotAllowed(
                    f"step {name!r} passes {k}=, which a federated model may not use", op=f"{target}({k}=)"
                )
            _check_value(v, seen)
        if op == "call_module" and target not in modules:
            raise InvalidArgument(f"step {name!r} calls module {target!r}, which the graph does not define")
        if op == "get_attr" and target not in tensors:
            raise InvalidArgument(f"step {name!r} reads tensor {target!r}, which the graph does not define")
        if op == "call_function" and len(args) > POSITIONAL_LIMIT.get(target, MAX_ITEMS):
            raise OpNotAllowed(
                f"step {name!r} passes {len(args)} positional arguments to {target}: the ones from "
                f"{POSITIONAL_LIMIT[target] + 1} on write into their input, which a federated model may not do",
                op=target,
            )
        if op == "call_function" and target not in FUNCTIONS:
            raise OpNotAllowed(f"{target} is not allowed in a federated model (step {name!r})"[:400], op=target[:200])
        if op == "call_method":
            if target not in METHODS:
                raise OpNotAllowed(
                    f"the tensor method .{target}() is not allowed in a federated model (step {name!r})"[:400],
                    op=f"Tensor.{target[:200]}",
                )
            if not args or not (isinstance(args[0], dict) and "ref" in args[0]):
                raise InvalidArgument(f"step {name!r} calls a method on something that is not a step's tensor")
        if target == "builtins.getattr" and (
            len(args) != 2 or kwargs or not isinstance(args[1], str) or args[1] not in GETATTR_NAMES
        ):
            raise OpNotAllowed(
                f"step {name!r} reads an attribute other than {', '.join(sorted(GETATTR_NAMES))}",
                op=f"getattr {str(args[1:2])[:100]}",
            )
        if op == "output" and (len(args) != 1 or kwargs or not (isinstance(args[0], dict) and "ref" in args[0])):
            raise InvalidArgument("the model must return one tensor")
        if op == "placeholder" and (args or kwargs):
            raise InvalidArgument("the input step takes no arguments")
        seen.add(name)
    return CheckedGraph(graph, weights, frozenset(trainable), total)


# ---------------------------------------------------------------- reading it


def _show(v: Any) -> str:
    if isinstance(v, dict):
        ((key, inner),) = v.items()
        if key == "ref":
            return str(inner)
        if key == "tuple":
            return "(" + ", ".join(_show(x) for x in inner) + ("," if len(inner) == 1 else "") + ")"
        if key == "slice":
            a, b, c = (("" if x is None else _show(x)) for x in inner)
            return f"{a}:{b}" + (f":{c}" if c else "")
        if key == "ellipsis":
            return "..."
        return f"torch.{inner}"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return repr(v)


def _call(args: list[Any], kwargs: dict[str, Any]) -> str:
    return ", ".join([*(_show(a) for a in args), *(f"{k}={_show(v)}" for k, v in kwargs.items())])


def describe(graph: dict[str, Any]) -> list[str]:
    """One line per step: ``h = fc1(x)    # Linear(in_features=784, …)``."""
    out = []
    for node in graph["nodes"]:
        name, op, target, args, kwargs = (node[k] for k in ("name", "op", "target", "args", "kwargs"))
        if op == "placeholder":
            out.append(f"{name} = input")
        elif op == "output":
            out.append(f"return {_show(args[0])}")
        elif op == "get_attr":
            t = graph["tensors"][target]
            out.append(
                f"{name} = self.{target}    # tensor {tuple(t['shape'])}, {'trained' if t['trainable'] else 'fixed'}"
            )
        elif op == "call_module":
            m = graph["modules"][target]
            shown = ", ".join(f"{k}={v!r}" for k, v in m["args"].items())
            out.append(f"{name} = self.{target}({_call(args, kwargs)})    # {m['type']}({shown})")
        elif op == "call_method":
            out.append(f"{name} = {_show(args[0])}.{target}({_call(args[1:], kwargs)})")
        elif target == "builtins.getattr":
            out.append(f"{name} = {_show(args[0])}.{args[1]}")
        elif target.startswith("operator."):
            sym = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "matmul": "@", "pow": "**"}
            sym["mod"] = "%"
            op_name = target.split(".", 1)[1]
            if op_name in sym and len(args) == 2:
                out.append(f"{name} = {_show(args[0])} {sym[op_name]} {_show(args[1])}")
            elif op_name == "getitem":
                out.append(f"{name} = {_show(args[0])}[{_show(args[1]).strip('()')}]")
            else:
                out.append(f"{name} = {target}({_call(args, kwargs)})")
        else:
            out.append(f"{name} = {target}({_call(args, kwargs)})")
    return out


# ---------------------------------------------------------------- the client: tracing a model


def _encode(v: Any, node_type: type) -> Any:
    import torch

    if isinstance(v, node_type):
        return {"ref": v.name}  # type: ignore[attr-defined]
    if v is None or type(v) in (bool, int, float, str):
        return v
    if isinstance(v, tuple):
        return {"tuple": [_encode(x, node_type) for x in v]}
    if isinstance(v, list):
        return [_encode(x, node_type) for x in v]
    if isinstance(v, slice):
        return {"slice": [_encode(x, node_type) for x in (v.start, v.stop, v.step)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, torch.dtype):
        name = str(v).removeprefix("torch.")
        if name in DTYPES:
            return {"dtype": name}
    raise InvalidArgument(
        f"the model passes {type(v).__name__} {str(v)[:80]!r} to an op: a graph holds constants, tensors and lists"
    )


def _function_name(fn: Any, names: dict[int, str]) -> str:
    import torch

    name = names.get(id(fn))
    if name is not None:
        return name
    for space in ("torch", "torch.fft", "torch.linalg", "torch.special", "torch.nn.functional"):
        module = torch if space == "torch" else __import__(space, fromlist=["_"])
        for attr in (getattr(fn, "__name__", ""), getattr(fn, "__name__", "").split("_", 1)[-1]):
            if attr and getattr(module, attr, None) is fn:  # named as it is written, not torch's inner name
                return f"{space}.{attr}"
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{mod}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def trace(model: torch.nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A model's graph and its weights (the client side): refuses, naming it, any op or module
    that is not allowed, and a model ``torch.fx`` cannot trace."""
    import torch
    import torch.fx

    from .fl_ops import function_names

    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(f"a federated model is a torch.nn.Module, not {type(model).__name__}")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:
        raise InvalidArgument(
            f"the model does not trace with torch.fx ({type(e).__name__}: {str(e)[:300]}): its forward "
            "must not branch on tensor values or call Python on them"
        ) from None
    names = function_names()
    modules: dict[str, Any] = {}
    tensors: dict[str, Any] = {}
    weights: dict[str, torch.Tensor] = {}
    nodes = []
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise InvalidArgument(f"a federated model's forward takes one input; this one takes {len(placeholders)}")
    for n in gm.graph.nodes:
        target: str = n.target if isinstance(n.target, str) else _function_name(n.target, names)
        if n.op == "call_function":
            if target not in FUNCTIONS:
                raise OpNotAllowed(f"the model uses {target}, which is not allowed in a federated model", op=target)
        elif n.op == "call_module" and target not in modules:
            sub = gm.get_submodule(target)
            args = module_args(sub)
            modules[target] = {"type": type(sub).__name__, "args": args}
            for k, t in sub.state_dict().items():
                weights[f"{target}.{k}"] = t.detach().clone().contiguous()
        elif n.op == "get_attr" and target not in tensors:
            t = gm
            for part in target.split("."):
                t = getattr(t, part)
            if not isinstance(t, torch.Tensor):
                raise InvalidArgument(f"the model reads {target!r}, which is not a tensor")
            trainable = isinstance(t, torch.nn.Parameter) and t.requires_grad
            if trainable:
                t = t.detach().to(torch.float32)
            dtype = str(t.dtype).removeprefix("torch.")
            tensors[target] = {"shape": list(t.shape), "dtype": dtype, "trainable": trainable}
            weights[target] = t.detach().clone().contiguous()
        nodes.append(
            {
                "name": n.name,
                "op": n.op,
                "target": target,
                "args": [_encode(a, torch.fx.Node) for a in n.args],
                "kwargs": {k: _encode(v, torch.fx.Node) for k, v in n.kwargs.items()},
            }
        )
    graph = {"version": VERSION, "modules": modules, "tensors": tensors, "nodes": nodes}
    checked = check_graph(graph)
    for k, (shape, dtype) in checked.weights.items():
        t = weights.get(k)
        if t is None or tuple(t.shape) != shape:
            raise InvalidArgument(f"the model's {k} is not the shape its module's arguments give ({shape})")
        weights[k] = t.to(getattr(torch, dtype))
    return graph, {k: weights[k] for k in checked.weights}


# ---------------------------------------------------------------- both sides: running it


def _parent(root: Any, path: str, what: str) -> tuple[Any, str]:
    """The container a dotted path's last part goes in (made as needed), and that part."""
    import torch

    *parents, last = path.split(".")
    here = root
    for p in parents:
        nxt = here._modules.get(p)
        if nxt is None:
            if hasattr(here, p):
                raise InvalidArgument(f"{what} path {path!r} runs through {p!r}, which is not a container")
            nxt = torch.nn.Module()
            here.add_module(p, nxt)
        here = nxt
    if hasattr(here, last):
        raise InvalidArgument(f"two parts of the model are named {path!r}")
    return here, last


def _place(root: Any, path: str, module: Any) -> None:
    here, last = _parent(root, path, "module")
    here.add_module(last, module)


def _place_tensor(root: Any, path: str, value: Any, trainable: bool) -> None:
    import torch

    here, last = _parent(root, path, "tensor")
    if trainable:
        here.register_parameter(last, torch.nn.Parameter(value))
    else:
        here.register_buffer(last, value)


def _build_args(v: Any) -> Any:
    """Constants made once (dtypes, ellipses); references stay to be looked up per run."""
    import torch

    if isinstance(v, dict):
        ((key, inner),) = v.items()
        if key == "tuple":
            return ("tuple", [_build_args(x) for x in inner])
        if key == "slice":
            return ("slice", [_build_args(x) for x in inner])
        if key == "ellipsis":
            return ("const", Ellipsis)
        if key == "dtype":
            return ("const", getattr(torch, inner))
        return ("ref", inner)
    if isinstance(v, list):
        return ("list", [_build_args(x) for x in v])
    return ("const", v)


def _value(a: tuple[str, Any], env: dict[str, Any]) -> Any:
    kind, x = a
    if kind == "const":
        return x
    if kind == "ref":
        return env[x]
    items = [_value(i, env) for i in x]
    if kind == "tuple":
        return tuple(items)
    if kind == "slice":
        return slice(*items)
    return items


def _getattr(obj: Any, name: str) -> Any:
    import torch

    if not isinstance(obj, torch.Tensor) or name not in GETATTR_NAMES:
        raise OpNotAllowed(f"only a tensor's {', '.join(sorted(GETATTR_NAMES))} may be read", op=f"getattr {name}")
    return getattr(obj, name)


def _method(name: str) -> Any:
    import torch

    def call(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(obj, torch.Tensor):
            raise OpNotAllowed(f".{name}() is called on {type(obj).__name__}, not a tensor", op=f"Tensor.{name}")
        return getattr(obj, name)(*args, **kwargs)

    return call


def build_model(checked: CheckedGraph) -> Any:
    """A ``GraphModel`` (a ``torch.nn.Module``) for a checked graph, its weights still to load."""
    import torch

    class GraphModel(torch.nn.Module):
        """A model rebuilt from its graph: modules from their arguments, steps interpreted."""

        def __init__(self) -> None:
            super().__init__()
            graph = checked.graph
            for path, m in graph["modules"].items():
                margs = {k: tuple(v) if isinstance(v, list) else v for k, v in m["args"].items()}
                _place(self, path, getattr(torch.nn, m["type"])(**margs))
            for name, t in graph["tensors"].items():
                value = torch.zeros(t["shape"], dtype=getattr(torch, t["dtype"]))
                _place_tensor(self, name, value, t["trainable"])
            built = dict(self.named_parameters()) | dict(self.named_buffers())
            want = {k: v[0] for k, v in checked.weights.items()}
            got = {k: tuple(v.shape) for k, v in built.items()}
            if got != want:  # the table's shapes and torch's disagree: refuse rather than guess
                raise InvalidArgument(
                    f"the model's weights are not what its modules make: {sorted(set(got) ^ set(want))[:5]}"
                )
            self._sk_steps: list[tuple[str, Any, Any, Any]] = []
            for node in graph["nodes"][1:-1]:
                op, target = node["op"], node["target"]
                fn: Any
                if op == "call_module":
                    fn = self.get_submodule(target)
                elif op == "get_attr":
                    fn = built[target]
                elif op == "call_method":
                    fn = _method(target)
                elif target == "builtins.getattr":
                    fn = _getattr
                else:
                    from .fl_ops import resolve_function

                    fn = resolve_function(target)
                args = [_build_args(a) for a in node["args"]]
                kwargs = {k: _build_args(v) for k, v in node["kwargs"].items()}
                self._sk_steps.append((node["name"], op, fn, (args, kwargs)))
            self._sk_input = graph["nodes"][0]["name"]
            self._sk_output = graph["nodes"][-1]["args"][0]["ref"]

        def forward(self, x: Any) -> Any:
            env: dict[str, Any] = {self._sk_input: x}
            for name, op, fn, (args, kwargs) in self._sk_steps:
                if op == "get_attr":
                    env[name] = fn
                    continue
                env[name] = fn(*[_value(a, env) for a in args], **{k: _value(v, env) for k, v in kwargs.items()})
            out = env[self._sk_output]
            if not isinstance(out, torch.Tensor):
                raise InvalidArgument(f"the model returned {type(out).__name__}, not a tensor")
            return out

    return GraphModel()


# ---------------------------------------------------------------- weights (safetensors)

_ST_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32"}
_ST_DTYPES["BOOL"] = "bool"
_ITEM = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "bool": 1}


def weights_header(data: bytes | memoryview) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each tensor's shape and dtype in safetensors bytes, checked to cover the bytes exactly
    (read without torch or numpy: the node judges weights before its trainer loads them)."""
    import json
    import struct

    view = memoryview(data)
    if view.nbytes < 8:
        raise InvalidArgument("the weights are not safetensors bytes (too short)")
    (n,) = struct.unpack("<Q", view[:8])
    if not 2 <= n <= min(view.nbytes - 8, 16 << 20):
        raise InvalidArgument("the weights are not safetensors bytes (a bad header length)")
    try:
        header = json.loads(bytes(view[8 : 8 + n]))
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the weights are not safetensors bytes (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidArgument("the weights are not safetensors bytes (the header is not a map)")
    header.pop("__metadata__", None)
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    spans = []
    for name, t in header.items():
        ok = isinstance(t, dict) and isinstance(t.get("dtype"), str) and t["dtype"] in _ST_DTYPES
        ok = ok and isinstance(t.get("shape"), list)
        ok = ok and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
        ok = ok and all(type(s) is int and 0 <= s < 1 << 40 for s in [*t["shape"], *t["data_offsets"]])
        if not ok or len(t["shape"]) > 8:
            raise InvalidArgument(f"the weights' entry {str(name)[:100]!r} is malformed")
        dtype = _ST_DTYPES[t["dtype"]]
        a, b = t["data_offsets"]
        if b - a != math.prod(t["shape"]) * _ITEM[dtype]:
            raise InvalidArgument(f"the weights' entry {name[:100]!r} does not hold its shape's bytes")
        spans.append((a, b))
        out[name] = (tuple(t["shape"]), dtype)
    spans.sort()
    end = 0
    for a, b in spans:
        if a != end:
            raise InvalidArgument("the weights' tensors overlap or leave gaps")
        end = b
    if end != view.nbytes - 8 - n:
        raise InvalidArgument("the weights' bytes are not what their header says")
    return out


def check_weights(checked: CheckedGraph, data: bytes | memoryview) -> None:
    """Refuse weights that are not exactly the graph's (names, shapes, dtypes), saying how."""
    got = weights_header(data)
    want = checked.weights
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = [
        f"{k} is {got[k][0]} {got[k][1]}, not {want[k][0]} {want[k][1]}"
        for k in sorted(set(got) & set(want))
        if got[k] != want[k]
    ]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:5]))
        if extra:
            parts.append("not in the graph: " + ", ".join(e[:100] for e in extra[:5]))
        parts += wrong[:5]
        raise InvalidArgument("the weights do not match the model's graph: " + "; ".join(parts))


def to_safetensors(weights: dict[str, torch.Tensor]) -> bytes:
    """Weights as safetensors bytes (the client's and the trainer's format)."""
    import safetensors.torch

    return safetensors.torch.save({k: v.detach().contiguous() for k, v in weights.items()})


def from_safetensors(data: bytes | memoryview) -> dict[str, torch.Tensor]:
    """Weights from safetensors bytes (never a pickle)."""
    import safetensors.torch

    return safetensors.torch.load(bytes(data))


__all__ = [
    "CheckedGraph",
    "build_model",
    "check_graph",
    "check_weights",
    "describe",
    "from_safetensors",
    "to_safetensors",
    "trace",
    "weights_header",
]
