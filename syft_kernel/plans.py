"""Plans: a function over pointers traced once into the plan IR, then run in one round trip.

``@sk.plan`` wraps a function. Calling it with pointers traces it (the first time), checks the
whole plan against the allowlist on the node and runs it there; ``run_on_mock`` runs the same
ops locally on the mocks. A plan's hash covers its ops with the inputs abstracted, so an owner
who approves ``(plan, inputs)`` once releases every later run's results without a new request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .batch import Batch, _open
from .core import schema
from .core.errors import InvalidArgument
from .core.plan import plan_hash
from .pointer import Pointer

if TYPE_CHECKING:
    from .client import Client
    from .requests import Request


class Trace(Batch):
    """A batch that is never sent: it only collects the ops of a traced function."""

    tracing = True

    def __init__(self, client: Client, inputs: list[Pointer]) -> None:
        super().__init__(client)
        _open.discard(self)  # never sent: the end of a cell must not try
        self.inputs = {id(p): i for i, p in enumerate(inputs)}

    def flush(self) -> None:
        raise InvalidArgument(
            "a plan cannot look at values while it is traced (no get(), bool(), len() or print of "
            "pointers inside a plan); return them instead"
        )


class Plan:
    """A traced function: ``plan(*pointers)`` runs it on the node in one round trip."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.ops: list[dict[str, Any]] | None = None
        self.outputs: list[int] = []
        self.buffers: list[Any] = []
        self.single = True
        functools.update_wrapper(self, fn)

    # ---- tracing
    def trace(self, *inputs: Pointer) -> Plan:
        """Record the function's ops over ``inputs`` (pointers, used for their types and mocks)."""
        if not inputs or not all(isinstance(p, Pointer) for p in inputs):
            raise InvalidArgument("a plan is traced and called with pointers as its arguments")
        client = inputs[0].client
        trace = Trace(client, list(inputs))
        outer, client._batch = client._batch, trace
        try:
            out = self.fn(*inputs)
        finally:
            client._batch = outer
        results = out if isinstance(out, tuple) else (out,)
        self.single = not isinstance(out, tuple)
        outputs = []
        for r in results:
            if not isinstance(r, Pointer) or r._batch is not trace:
                raise InvalidArgument("a plan returns pointers computed inside it (or a tuple of them)")
            outputs.append(r._index)
        self.ops, self.outputs, self.buffers = trace.ops, outputs, trace.encoder.buffers
        return self

    @property
    def hash(self) -> str:
        """The plan's content hash: what an owner approves."""
        if self.ops is None:
            raise InvalidArgument("trace the plan first: call it, or plan.trace(*pointers)")
        return plan_hash(self.ops, self.outputs, self.buffers)

    # ---- running
    def __call__(self, *inputs: Pointer) -> Any:
        """Run the plan on the node over these pointers (traced on the first call)."""
        if self.ops is None:
            self.trace(*inputs)
        assert self.ops is not None
        client = inputs[0].client
        ids = [p.id for p in inputs]
        body = schema.Run(ops=self.ops, keep=self.outputs, inputs=ids, plan=self.hash)
        reply, _ = client.call(body, buffers=self.buffers)
        client.last_plan = self.ops
        ptrs = tuple(_result_pointer(client, r, self, inputs, i) for i, r in zip(self.outputs, reply["results"]))
        return ptrs[0] if self.single else ptrs

    def run_on_mock(self, *inputs: Pointer) -> Any:
        """The same ops, run here on the inputs' mocks: free debugging, nothing leaves the node."""
        from syft_kernel.core.executor import Value, run_plan

        if self.ops is None:
            self.trace(*inputs)
        assert self.ops is not None
        values = run_plan(self.ops, _no_refs, self.buffers, inputs=[Value(p.mock) for p in inputs])
        out = tuple(values[i].value for i in self.outputs)
        return out[0] if self.single else out

    def request(self, *inputs: Pointer, reason: str) -> Request:
        """Ask the owner to approve this plan on these inputs: later runs release at once."""
        from .requests import make_request

        if self.ops is None:
            self.trace(*inputs)
        client = inputs[0].client
        assert self.ops is not None
        body = schema.PlansRequest(ops=self.ops, outputs=self.outputs, inputs=[p.id for p in inputs], reason=reason)
        info, _ = client.call(body, buffers=self.buffers)
        return make_request(client, info)

    def lines(self) -> list[str]:
        """The plan as code-like lines (inputs are in0, in1, …)."""
        from syft_kernel.core.render import render_plan

        return render_plan(self.ops, self.outputs) if self.ops is not None else ["<not traced yet>"]

    def __repr__(self) -> str:
        head = f"plan {self.fn.__name__}" + (f" (hash {self.hash[:12]})" if self.ops is not None else "")
        return "\n".join([head, *("    " + line for line in self.lines())])


def _no_refs(obj_id: str) -> Any:
    raise InvalidArgument(f"a plan run on mocks cannot use the stored object {obj_id!r}")


def _result_pointer(client: Client, result: dict[str, Any], plan: Plan, inputs: tuple[Pointer, ...], i: int) -> Pointer:
    from .pointer import Recipe

    parents = tuple(p._recipe for p in inputs)
    recipe = Recipe(client, op=None, parents=parents)
    recipe._mock_fn = lambda: _mock_output(plan, inputs, i)
    return Pointer(client, result["id"], result["meta"], f"{plan.fn.__name__}()", recipe)


def _mock_output(plan: Plan, inputs: tuple[Pointer, ...], i: int) -> Any:
    from syft_kernel.core.executor import Value, run_plan

    assert plan.ops is not None
    values = run_plan(plan.ops, _no_refs, plan.buffers, inputs=[Value(p.mock) for p in inputs])
    return values[i].value


def plan(fn: Callable[..., Any]) -> Plan:
    """Decorator: turn a function over pointers into a ``Plan``."""
    return Plan(fn)


__all__ = ["Plan", "plan"]
