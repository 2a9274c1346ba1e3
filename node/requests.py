"""Requests: a scientist asks for a private object or a code run; owners approve or deny.

Everything is in SQLite, each change one transaction: a request, its signed approvals, the
readers it grants, the object it releases (written to ``objects/`` first). Decisions are signed
with the owner's Ed25519 key over the request's content hash, checked here, and unique by nonce.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from syft_kernel.core.errors import (
    NotFound,
    QuotaExceeded,
)
from syft_kernel.core.executor import NO_TWIN, Failed

from . import governance
from .jobs import JobOutcome
from .objfile import write_value
from .state import DataNode, User
from .store import StoredObject

log = logging.getLogger("syft_kernel.node")

MAX_SOURCE = 100_000


def _datasets_of(node: DataNode, lineage: Sequence[str]) -> list[dict[str, Any]]:
    if "@accounts" in lineage:  # an account request: the node's owners decide (node/accounts.py)
        from .accounts import owners_entry

        return [owners_entry(node)]
    names = sorted({entry.split("/", 1)[0] for entry in lineage})
    out = []
    for n in names:
        d = node.db.dataset(n)
        if d is not None:
            out.append({"name": n, "owners": d["owners"], "policy": d["policy"]})
    return out


def public_request(node: DataNode, row: dict[str, Any], user: User) -> dict[str, Any]:
    """A request as its viewer may see it, with governance progress."""
    datasets = _datasets_of(node, row["datasets"])
    votes = {a["owner"]: a["decision"] for a in row["approvals"]}
    _, progress = governance.evaluate(datasets, votes)
    out = {k: v for k, v in row.items() if k not in ("limits",)}
    if row["kind"] == "training":  # its spec (graph, plan) is the node's to run; people read it as ``plan`` lines
        out["source"] = None
    out["progress"] = progress
    out["approvals"] = [
        {k: a[k] for k in ("owner", "decision", "comment", "at", "signature")} for a in row["approvals"]
    ]
    if not user.is_owner and row["requester"] != user.name:
        raise NotFound(f"no request {row['id']!r}")
    if not user.is_owner and row.get("status") != "approved":
        out["size"] = None  # the bytes of a private value tell its row count: the owner's to see
    return out


def _persist(node: DataNode, obj: StoredObject) -> int:
    """Write an object to ``objects/`` and record it, so it outlives the process."""
    if node.db.object(obj.id) is not None:
        return int(node.db.object(obj.id)["size"])  # type: ignore[index]
    path = node.objects_dir / f"{obj.id}.bin"
    v = obj.value
    failed = v.failed
    try:
        size = write_value(path, None if failed else v.value)
    except Exception as e:
        # the real value cannot be written (a column of mixed types the twin does not have): the
        # codec's text would quote it, so the request is filed on a value that failed, and only
        # the owner's audit log says why
        failed = Failed("storing the value", type(e).__name__, f"{type(e).__name__}: {e}"[:2000])
        node.db.audit(obj.owner, "object.unstorable", obj.id, error=failed.detail)
        obj.value = v = dataclasses.replace(v, value=failed)
        size = write_value(path, None)
    if v.private and v.twin is not NO_TWIN:  # its public twin, so it is described the same after a restart
        write_value(node.objects_dir / f"{obj.id}.twin.bin", v.twin)
    facts: dict[str, Any] = {
        "shape": list(v.public_shape) if v.public_shape is not None else None,
        "stable": v.stable,
        "labels": v.labels_public,
        "rows": v.rows_bound,
    }
    if failed:
        facts["failed"] = {"op": failed.op, "exception": failed.exception, "detail": failed.detail}
    node.db.add_object(obj.id, obj.owner, sorted(v.lineage), facts, path.name, size)
    return size


def _content_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_request_quota(node: DataNode, user: User) -> None:
    """A user may have at most ``limits.max_pending_requests`` undecided requests persisted."""
    limit = node.limits.max_pending_requests
    (pending,) = node.db.conn.execute(
        "SELECT COUNT(*) FROM requests WHERE requester=? AND status='pending'", (user.name,)
    ).fetchone()
    if pending >= limit:
        raise QuotaExceeded(
            f"you have {pending} requests waiting for a decision on {node.name} (at most "
            f"{limit}): wait for the owners, or withdraw some, before filing more",
            limit="requests",
        )


def _file(
    node: DataNode,
    user: User,
    kind: str,
    target: str,
    lineage: list[str],
    reason: str,
    content_hash: str,
    action: str,
    detail: dict[str, Any],
    **columns: Any,
) -> tuple[Any, list[Any]]:
    """Record a new pending request and its audit entry in one transaction; tell the owners."""
    check_request_quota(node, user)
    request_id = "r" + secrets.token_hex(8)
    now = time.time()
    cols = {
        "id": request_id,
        "requester": user.name,
        "kind": kind,
        "target": target,
        "datasets": json.dumps(lineage),
        "reason": reason,
        "status": "pending",
        "content_hash": content_hash,
        "created_at": now,
        **columns,
    }
    with node.db.tx() as c:
        c.execute(
            f"INSERT INTO requests({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(cols.values())
        )
        c.execute(
            "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (now, user.name, action, request_id, json.dumps(detail, default=str)),
        )
    row = node.db.request(request_id)
    assert row is not None
    node.notify_owners({"event": "request.new", "request": request_id})
    return public_request(node, row, user), []


def grant_reader(node: DataNode, obj: StoredObject, user: str, request_id: str) -> None:
    """A run of an approved plan: its private results are released to the requester."""
    _persist(node, obj)
    with node.db.tx() as c:
        c.execute(
            "INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)", (obj.id, user, request_id)
        )


def job_finished(node: DataNode, request_id: str, outcome: JobOutcome) -> None:
    """Record a code run's end; its output becomes the requester's, released by the approval."""
    row = node.db.request(request_id)
    if row is None:
        return
    now = time.time()
    if outcome.ok and outcome.value is not None:
        obj = StoredObject("o" + secrets.token_hex(12), outcome.value, row["requester"], provenance=None)
        size = _persist(node, obj)
        node.store.adopt(obj)
        with node.db.tx() as c:
            c.execute(
                "UPDATE requests SET run_status='done', result_id=?, size=? WHERE id=?", (obj.id, size, request_id)
            )
            c.execute(
                "INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)",
                (obj.id, row["requester"], request_id),
            )
            c.execute(
                "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'code.run', ?, ?)",
                (now, row["requester"], request_id, json.dumps({"result": "done", "bytes": size})),
            )
        log.info("code request %s finished (%d bytes of output)", request_id, size)
    else:
        with node.db.tx() as c:
            c.execute("UPDATE requests SET run_status='failed', run_error=? WHERE id=?", (outcome.error, request_id))
            c.execute(
                "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'code.run', ?, ?)",
                (
                    now,
                    row["requester"],
                    request_id,
                    json.dumps({"result": "failed", "error": outcome.error, "detail": outcome.detail}),
                ),
            )
        log.warning("code request %s failed: %s", request_id, outcome.error)
    node.notify(row["requester"], {"event": "job.finished", "request": request_id})
    node.notify_owners({"event": "job.finished", "request": request_id})
