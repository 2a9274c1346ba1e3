"""The plan IR both sides share: ops, the three kinds of reference, the plan's hash.

A plan is a list of ops ``{"kind", "name", "args", "kwargs"}`` whose encoded arguments may name
a stored object (``ref``), an earlier op's result (``res``) or a plan input (``in``). The client
builds ops here, the node checks and runs them (``core.executor``), and both hash them the same
way: the hash is what an owner approves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgpack

from .codec import TAG
from .errors import ProtocolError

KINDS = ("op", "function", "getattr", "method")  # what an op calls: operator, function, attribute, method
MAX_REFS = 10_000


def make_op(kind: str, name: str, args: Sequence[Any], kwargs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """One op of the IR from already encoded arguments."""
    return {"kind": kind, "name": name, "args": list(args), "kwargs": [[k, v] for k, v in kwargs]}


def ref(obj_id: str) -> dict[str, Any]:
    """An argument naming a stored object."""
    return {TAG: "ref", "id": obj_id}


def res(index: int) -> dict[str, Any]:
    """An argument naming the result of op ``index`` of the same plan."""
    return {TAG: "res", "i": index}


def inp(index: int) -> dict[str, Any]:
    """An argument naming input ``index`` of a traced plan (bound to an object at each run)."""
    return {TAG: "in", "i": index}


def plan_hash(ops: list[dict[str, Any]], outputs: list[int], buffers: Sequence[Any] = ()) -> str:
    """A stable content hash of a plan: its ops (with abstract inputs), every literal including
    the raw buffers of arrays and frames (by their SHA-256), and which results it returns."""
    digests = [hashlib.sha256(memoryview(b)).hexdigest() for b in buffers]
    return hashlib.sha256(
        msgpack.packb({"ops": ops, "outputs": outputs, "buffers": digests}, use_bin_type=True)
    ).hexdigest()


def referenced_ids(ops: Any) -> list[str]:
    """Every stored object a plan names with a ``ref`` (in any argument, at any depth)."""
    found: dict[str, None] = {}
    stack = [ops]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get(TAG) == "ref":
                if not isinstance(x.get("id"), str):
                    raise ProtocolError("a ref names an object id (a string)")
                found[x["id"]] = None
                if len(found) > MAX_REFS:
                    raise ProtocolError(f"a plan references at most {MAX_REFS} objects")
            else:
                stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return sorted(found)


def bind_inputs(ops: list[Any], input_ids: list[str]) -> list[Any]:
    """The plan with its abstract inputs replaced by the objects it ran on (for provenance)."""
    if not input_ids:
        return ops

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if x.get(TAG) == "in" and isinstance(x.get("i"), int) and 0 <= x["i"] < len(input_ids):
                return ref(input_ids[x["i"]])
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return list(walk(ops))
