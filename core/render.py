"""Readable provenance: the ops that produced an object, as code-like lines an owner can review.

Rendering works on the plan IR alone (no values), so it is the same on the node and the client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ProtocolError

SYMBOLS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "truediv": "/",
    "floordiv": "//",
    "mod": "%",
    "pow": "**",
    "matmul": "@",
    "and_": "&",
    "or_": "|",
    "xor": "^",
    "lshift": "<<",
    "rshift": ">>",
    "lt": "<",
    "le": "<=",
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "ge": ">=",
}
UNARY = {"neg": "-", "pos": "+", "invert": "~", "abs": "abs"}

Provenance = dict[str, Any]  # {"ops": [...], "index": i}


def render_arg(node: Any, names: Callable[[dict[str, Any]], str]) -> str:
    """A short code-like form of an encoded argument."""
    if isinstance(node, list):
        return "[" + ", ".join(render_arg(x, names) for x in node) + "]"
    if not isinstance(node, dict):
        return repr(node)
    tag = node.get("~")
    if tag in ("ref", "res", "in"):
        return names(node)
    if tag == "tuple":
        items = [render_arg(x, names) for x in node.get("v", [])]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if tag == "dict":
        return "{" + ", ".join(f"{render_arg(k, names)}: {render_arg(v, names)}" for k, v in node.get("v", [])) + "}"
    if tag == "slice":
        parts = ["" if p is None else render_arg(p, names) for p in node.get("v", [None, None, None])]
        return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
    if tag == "...":
        return "..."
    if tag in ("dtype", "pytype", "tdtype"):
        return str(node.get("v"))
    if tag == "nd":
        return f"<array {'x'.join(map(str, node.get('shape', [])))} {node.get('dtype')}>"
    if tag in ("df", "series", "tensor"):
        return f"<{tag}>"
    return f"<{tag}>"


def render_op(op: dict[str, Any], names: Callable[[dict[str, Any]], str]) -> str:
    kind, name = op.get("kind"), str(op.get("name"))
    args = [render_arg(a, names) for a in op.get("args", [])]
    kwargs = [f"{k}={render_arg(v, names)}" for k, v in op.get("kwargs", [])]
    if kind == "getattr":
        return f"{args[0]}.{name}"
    if kind == "method":
        return f"{args[0]}.{name}({', '.join(args[1:] + kwargs)})"
    if kind == "function":
        return f"{name.replace('numpy.', 'np.')}({', '.join(args + kwargs)})"
    if name == "getitem":
        return f"{args[0]}[{args[1]}]"
    if name in SYMBOLS:
        return f"{args[0]} {SYMBOLS[name]} {args[1]}"
    if name in UNARY:
        return f"abs({args[0]})" if name == "abs" else f"{UNARY[name]}{args[0]}"
    return f"{name}({', '.join(args)})"


def render(obj_id: str, lookup: Callable[[str], Provenance | None]) -> list[str]:
    """Lines ``vN = …`` that rebuild ``obj_id`` from assets, ending with the object itself."""
    lines: list[str] = []
    done: dict[str, str] = {}

    def name_of(oid: str) -> str:
        if oid in done:
            return done[oid]
        if oid.startswith("asset:"):
            done[oid] = f"asset({oid[6:]!r})"
            return done[oid]
        prov = lookup(oid)
        if prov is None:
            done[oid] = f"object({oid!r})"
            return done[oid]
        ops, index = prov["ops"], prov["index"]
        local: dict[int, str] = {}
        for i, op in enumerate(ops[: index + 1]):

            def names(node: dict[str, Any]) -> str:
                if node.get("~") == "ref":
                    return name_of(str(node.get("id")))
                return local.get(int(node.get("i", -1)), "?")

            text = render_op(op, names)
            var = f"v{len(lines) + 1}"
            lines.append(f"{var} = {text}")
            local[i] = var
        done[oid] = local[index]
        return done[oid]

    name_of(obj_id)
    return lines


def render_plan(
    ops: list[dict[str, Any]], outputs: list[int] | None = None, input_name: Callable[[int], str] = lambda i: f"in{i}"
) -> list[str]:
    """One ``vN = …`` line per op of a plan (inputs named by ``input_name``), then its return."""
    names = [f"v{i + 1}" for i in range(len(ops))]

    def name(node: dict[str, Any]) -> str:
        tag = node.get("~")
        if tag == "res":
            return names[int(node.get("i", 0))]
        if tag == "in":
            return input_name(int(node.get("i", 0)))
        oid = str(node.get("id"))
        return f"asset({oid[6:]!r})" if oid.startswith("asset:") else f"object({oid!r})"

    lines = []
    for i, op in enumerate(ops):
        try:
            lines.append(f"{names[i]} = {render_op(op, name)}")
        except (IndexError, KeyError, TypeError, ValueError, AttributeError, RecursionError):
            raise ProtocolError(
                f"op {i} is malformed (its arguments do not fit its kind): it cannot be shown for review"
            ) from None
    if outputs is not None:
        lines.append("return " + ", ".join(names[i] for i in outputs))
    return lines
