"""Stored objects: plans run over them, their values got (when the user may read them), their
public metadata described, and dropped pointers freed."""

from __future__ import annotations

import logging
from typing import Any

from syft_kernel.core import codec
from syft_kernel.core import schema as s
from syft_kernel.core.errors import PermissionDenied, ProtocolError, RemoteError
from syft_kernel.core.executor import describe, run_plan
from syft_kernel.core.plan import bind_inputs

from ..grants import plan_grant, within_approval
from ..requests import grant_reader
from ..state import DataNode, User
from . import Buffers, Reply

log = logging.getLogger("syft_kernel.node")


def run(node: DataNode, user: User, body: s.Run, buffers: Buffers) -> Reply:
    """Run a plan; store the results the client keeps and return their pointers' metadata."""
    ops = body.ops
    if not ops:
        raise ProtocolError("a plan is a non-empty list of ops")
    keep = body.keep if body.keep is not None else [len(ops) - 1]
    if not all(0 <= i < len(ops) for i in keep):
        raise ProtocolError(f"keep is a list of indices of the plan's {len(ops)} ops")
    if len(keep) > 1 and len(set(keep)) != len(keep):
        raise ProtocolError("keep lists distinct op indices, at most one per op")
    input_ids = body.inputs
    resolve = node.resolver(user)
    inputs = [resolve(i) for i in input_ids]
    granted = plan_grant(node, user, body.plan, ops, keep, input_ids, buffers)
    results = run_plan(ops, resolve, buffers, inputs, node.run_limits, keep)
    provenance_ops = bind_inputs(ops, input_ids)  # one copy, shared by every kept result
    out = []
    for i in keep:
        obj = node.store.put(results[i], user.name, provenance={"ops": provenance_ops, "index": i})
        failed = results[i].failed
        if failed is not None:  # only on the real data: the scientist is not told; the owner reads why
            node.db.audit(
                user.name, "op.failed", failed.op, error=failed.detail or failed.exception, object=obj.id, op_index=i
            )
        reveal = user.is_owner
        if granted is not None and results[i].private:
            if within_approval(results[i].lineage, granted["datasets"]):
                grant_reader(node, obj, user.name, str(granted["id"]))
                reveal = True
            else:  # the approval was given for other data: this result stays private
                node.db.audit(
                    user.name,
                    "plan.outside_approval",
                    str(granted["id"]),
                    object=obj.id,
                    lineage=sorted(results[i].lineage),
                )
                log.warning(
                    "%s ran approved plan %s, but result %s reads data outside the approval",
                    user.name,
                    granted["id"],
                    obj.id,
                )
        out.append({"id": obj.id, "meta": describe(results[i], reveal=reveal)})
    log.debug("%s ran a plan of %d op(s)", user.name, len(ops))
    return {"results": out}, []


def get(node: DataNode, user: User, body: s.Get, buffers: Buffers) -> Reply:
    obj_id = str(body.id)
    value = node.store.get(obj_id, user.name, user.is_owner)
    if not node.may_read(user, obj_id, value):
        _refuse(node, user, obj_id, value)
    failed = value.failed
    if failed is not None:  # a reader may see it: what failed on the real data (the owner sees why)
        text = failed.public_text() + (f": {failed.detail}" if user.is_owner and failed.detail else "")
        node.db.audit(user.name, "get.failed", obj_id, lineage=sorted(value.lineage))
        raise RemoteError(text, op=failed.op, exception=failed.exception, failed=True)
    tree, bufs = codec.encode_value(value.value)
    if value.private:
        size = sum(memoryview(x).nbytes for x in bufs)
        action = "get" if user.is_owner else "release"
        node.db.audit(user.name, action, obj_id, lineage=sorted(value.lineage), bytes=size)
        log.info("%s got private object %s (%d bytes)", user.name, obj_id, size)
    return {"value": tree}, bufs


def _refuse(node: DataNode, user: User, obj_id: str, value: Any) -> None:
    """A private value this user may not read: say why, and what to do (ask, or wait)."""
    sources = ", ".join(sorted(value.lineage))
    node.db.audit(user.name, "get.denied", obj_id, lineage=sorted(value.lineage))
    log.warning("%s was refused get() of %s (private: %s)", user.name, obj_id, sources)
    asked = node.db.latest_request_for(obj_id, user.name)
    if asked is not None and asked["status"] == "denied":
        deciders = ", ".join(a["owner"] for a in asked["approvals"] if a["decision"] == "deny") or "the owners"
        why = asked.get("comment") or "no reason given"
        raise PermissionDenied(
            f"request {asked['id']} for this value was denied by {deciders}: {why}. The value stays "
            f"on {node.name}; change what you compute, or file a new request with a better reason",
            request_id=asked["id"],
            status="denied",
            comment=asked.get("comment") or "",
            lineage=sorted(value.lineage),
        )
    if asked is not None and asked["status"] == "pending":
        raise PermissionDenied(
            f"request {asked['id']} for this value is still pending: the owners of {sources} have not "
            "decided yet; req.wait() returns when they do",
            request_id=asked["id"],
            status="pending",
            lineage=sorted(value.lineage),
        )
    raise PermissionDenied(
        f"this value is derived from private data ({sources}) and stays on {node.name} until the "
        "data owner approves its release: ask with ptr.request(reason='…'), or use a "
        "differentially private query (ptr.dp…) where your budget allows",
        request_hint="ptr.request(reason='…')",
        lineage=sorted(value.lineage),
    )


def describe_(node: DataNode, user: User, body: s.ObjectsDescribe, buffers: Buffers) -> Reply:
    value = node.store.get(body.id, user.name, user.is_owner)
    return {"id": body.id, "meta": describe(value, reveal=node.may_read(user, body.id, value))}, []


def delete(node: DataNode, user: User, body: s.Del, buffers: Buffers) -> Reply:
    return {"deleted": node.store.delete(body.ids, user.name, user.is_owner)}, []
