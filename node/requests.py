"""Requests: a scientist asks for a private object or a code run; owners approve or deny.

Everything is in SQLite, each change one transaction: a request, its signed approvals, the
readers it grants, the object it releases (written to ``objects/`` first). Decisions are signed
with the owner's Ed25519 key over the request's content hash, checked here, and unique by nonce.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from syft_kernel.core import codec
from syft_kernel.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    Unauthorized,
)
from syft_kernel.core.executor import NO_TWIN, Failed
from syft_kernel.core.keys import decision_message, verify_signature
from syft_kernel.core.render import render

from . import governance
from .grants import content_versions, plan_lineage, referenced_ids
from .jobs import JobOutcome, check_limits
from .objfile import write_value
from .service import DataNode, User, _body_dict, field, handler
from .store import StoredObject

log = logging.getLogger("syft_kernel.node")

MAX_SOURCE = 100_000


def _datasets_of(node: DataNode, lineage: Sequence[str]) -> list[dict[str, Any]]:
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
    out["progress"] = progress
    out["approvals"] = [{k: a[k] for k in ("owner", "decision", "comment", "at", "signature")} for a in row["approvals"]]
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
    facts: dict[str, Any] = {"shape": list(v.public_shape) if v.public_shape is not None else None,
                             "stable": v.stable, "labels": v.labels_public, "rows": v.rows_bound}
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
        "SELECT COUNT(*) FROM requests WHERE requester=? AND status='pending'", (user.name,)).fetchone()
    if pending >= limit:
        raise QuotaExceeded(f"you have {pending} requests waiting for a decision on {node.name} (at most "
                            f"{limit}): wait for the owners, or withdraw some, before filing more",
                            limit="requests")


def _file(node: DataNode, user: User, kind: str, target: str, lineage: list[str], reason: str,
          content_hash: str, action: str, detail: dict[str, Any], **columns: Any) -> tuple[Any, list[Any]]:
    """Record a new pending request and its audit entry in one transaction; tell the owners."""
    check_request_quota(node, user)
    request_id = "r" + secrets.token_hex(8)
    now = time.time()
    cols = {"id": request_id, "requester": user.name, "kind": kind, "target": target,
            "datasets": json.dumps(lineage), "reason": reason, "status": "pending",
            "content_hash": content_hash, "created_at": now, **columns}
    with node.db.tx() as c:
        c.execute(f"INSERT INTO requests({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                  tuple(cols.values()))
        c.execute("INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                  (now, user.name, action, request_id, json.dumps(detail, default=str)))
    row = node.db.request(request_id)
    assert row is not None
    node.notify_owners({"event": "request.new", "request": request_id})
    return public_request(node, row, user), []


@handler("requests.create")
def _create(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "id", "reason")
    obj_id, reason = str(b["id"]), b["reason"]
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 5000:
        raise InvalidArgument("say why you need the value: request(reason='…'), up to 5000 characters")
    node.store.get(obj_id, user.name, is_owner=False)  # yours, or NotFound
    obj = node.store.entry(obj_id)
    if obj is None:  # an asset itself: its pointer is not a stored object
        raise InvalidArgument("a whole asset is not released through a request: compute what you need from it "
                              "(a pointer operation, a plan or a code request) and request that")
    if not obj.value.private:
        raise InvalidArgument("this value has no private lineage: get() it directly")
    existing = node.db.open_request_for(obj_id, user.name)
    if existing is not None:
        return public_request(node, existing, user), []
    check_request_quota(node, user)  # before the object is written to disk
    plan = render(obj_id, node.store.provenance)
    size = _persist(node, obj)
    lineage = sorted(obj.value.lineage)
    log.info("%s requested %s (%d bytes): %s", user.name, obj_id, size, reason[:80])
    return _file(node, user, "object", obj_id, lineage, reason, _content_hash("object", obj_id, plan, lineage),
                 "request.create", {"object": obj_id, "bytes": size}, plan=json.dumps(plan), size=size)


@handler("code.submit")
def _submit(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "source", "fn_name", "inputs", "reason")
    source, fn_name, inputs, reason = b["source"], b["fn_name"], b["inputs"], b["reason"]
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE:
        raise InvalidArgument(f"the source is a string of at most {MAX_SOURCE} characters")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("say why you need this code run: submit(…, reason='…')")
    try:
        tree = ast.parse(source)  # parsed to check its shape; nothing here runs it
    except (SyntaxError, ValueError) as e:  # ValueError: a null byte
        raise InvalidArgument(f"the code does not parse: {e}") from None
    except (MemoryError, RecursionError):  # the parser's own limits, reached by deep nesting
        raise InvalidArgument("the code nests too deeply to parse") from None
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not isinstance(fn_name, str) or fn_name not in defs:
        raise InvalidArgument(f"the source must define the function {codec.short_repr(fn_name)}")
    if not isinstance(inputs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
        raise ProtocolError("inputs map argument names to object ids")
    lineage: set[str] = set()
    for obj_id in inputs.values():
        lineage |= node.store.get(obj_id, user.name, is_owner=False).lineage
        if obj_id.startswith("o"):
            obj = node.store.entry(obj_id)
            assert obj is not None
            _persist(node, obj)
    log.info("%s submitted code %s() for review", user.name, fn_name)
    return _file(node, user, "code", fn_name, sorted(lineage), reason, _content_hash("code", source, fn_name, inputs, content_versions(node, inputs.values())),
                 "code.submit", {"function": fn_name, "inputs": inputs}, source=source, fn_name=fn_name,
                 inputs=json.dumps(inputs))


@handler("requests.list")
def _list(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = body if isinstance(body, dict) else {}
    status, requester = b.get("status"), field(b, "requester", str, None, max_len=1000)
    kind = field(b, "kind", str, None, max_len=100)
    if status is not None and status not in ("pending", "approved", "denied"):
        raise InvalidArgument("status is pending, approved or denied")
    if not user.is_owner:
        requester = user.name
    rows = node.db.requests(status=status, requester=requester, kind=kind)
    return {"requests": [public_request(node, r, user) for r in rows]}, []


@handler("requests.get")
def _get(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "id")
    request_id = field(b, "id", str, max_len=1000, what="a request id (a string)")
    row = node.db.request(request_id)
    if row is None:
        raise NotFound(f"no request {request_id!r}")
    return public_request(node, row, user), []


@handler("requests.decide", role="owner")
def _decide(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "id", "decision", "nonce", "signature")
    request_id, decision = field(b, "id", str, max_len=1000, what="a request id (a string)"), b["decision"]
    field(b, "nonce", str, max_len=1000)
    field(b, "signature", str, max_len=1000)
    comment = b.get("comment") or ""
    if decision not in ("approve", "deny"):
        raise InvalidArgument("decision is approve or deny")
    if not isinstance(comment, str) or len(comment) > 5000:
        raise InvalidArgument("the comment is a string of at most 5000 characters")
    row = node.db.request(request_id)
    if row is None:
        raise NotFound(f"no request {request_id!r}")
    if row["status"] != "pending":
        raise InvalidArgument(f"request {request_id} is already {row['status']}: a decision is final")
    datasets = _datasets_of(node, row["datasets"])
    if not governance.may_decide(datasets, user.name):
        owners = sorted({o for d in datasets for o in d["owners"]})
        raise Unauthorized(f"{user.name} is not an owner of the data this request touches ({', '.join(owners)})")
    if any(a["owner"] == user.name for a in row["approvals"]):
        raise InvalidArgument(f"{user.name} has already decided on request {request_id}")
    signing_key = next((u["signing_key"] for u in node.db.users() if u["name"] == user.name), None)
    if not signing_key:
        raise Unauthorized(f"{user.name} has no signing key registered: re-add them with their .pub file")
    nonce, signature = str(b["nonce"]), str(b["signature"])
    message = decision_message(node.name, request_id, row["content_hash"], decision, nonce)
    if len(nonce) < 16 or not verify_signature(signing_key, message, signature):
        node.db.audit(user.name, "decision.bad_signature", request_id)
        raise PermissionDenied("the decision's signature does not verify with your registered signing key")
    limits = check_limits(b.get("limits")) if row["kind"] == "code" else {}
    votes = {a["owner"]: a["decision"] for a in row["approvals"]}
    votes[user.name] = decision
    status, _ = governance.evaluate(datasets, votes)
    now = time.time()
    with node.db.tx() as c:
        try:
            c.execute("INSERT INTO approvals(request_id, owner, decision, comment, nonce, signature, at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)", (request_id, user.name, decision, comment, nonce, signature, now))
        except Exception as e:  # the nonce was used before: a replayed signature
            raise PermissionDenied(f"this decision was already used ({e.__class__.__name__}): sign a fresh one") from None
        if status != "pending":
            c.execute("UPDATE requests SET status=?, decided_at=?, comment=?, limits=?,"
                      " run_status=CASE WHEN kind='code' AND ?='approved' THEN 'queued' ELSE run_status END"
                      " WHERE id=?", (status, now, comment, json.dumps(limits), status, request_id))
            if status == "approved" and row["kind"] == "budget":
                node.ledger.raise_budget(c, row["requester"], row["target"], float(row["inputs"]["epsilon"]))
            if status == "approved" and row["kind"] == "object":
                c.execute("INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)",
                          (row["target"], row["requester"], request_id))
        c.execute("INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                  (now, user.name, decision, request_id, json.dumps({"comment": comment, "result": status})))
    log.info("%s %s request %s (now %s)", user.name, "approved" if decision == "approve" else "denied",
             request_id, status)
    if status == "approved" and row["kind"] == "code":
        inputs = row["inputs"]
        now_hash = _content_hash("code", row["source"], row["fn_name"], inputs,
                                 content_versions(node, inputs.values()))
        if now_hash != row["content_hash"]:  # an input dataset was uploaded again since it was filed
            job_finished(node, request_id, JobOutcome(False, error=(
                "the data this code was submitted for has changed since (a dataset was uploaded again): "
                "the approval covers the old data only; submit the code again")))
        else:
            node.start_job(request_id)
    fresh = node.db.request(request_id)
    assert fresh is not None
    info = public_request(node, fresh, user)
    event = {"event": "request.decided" if status != "pending" else "request.updated", "request": request_id,
             "status": status}
    requester = next((User(u["name"], u["role"], u["public_key"]) for u in node.db.users()
                      if u["name"] == row["requester"]), None)
    if requester is not None:  # the requester wakes with the whole request, as they may see it
        node.notify(row["requester"], {**event, "info": public_request(node, fresh, requester)})
    node.notify_owners(event)
    return info, []


@handler("plans.request")
def _plan_request(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Ask for a plan to be approved on given inputs: its later runs' results are released."""
    from syft_kernel.core.executor import _validate
    from syft_kernel.core.plan import plan_hash
    from syft_kernel.core.render import render_plan

    b = _body_dict(body, "ops", "outputs", "inputs", "reason")
    ops, outputs, input_ids, reason = b["ops"], b["outputs"], b["inputs"], b["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("say why you need this plan: plan.request(…, reason='…')")
    _validate(ops)
    if not isinstance(outputs, list) or not all(isinstance(i, int) and 0 <= i < len(ops) for i in outputs):
        raise ProtocolError("outputs are indices of the plan's ops")
    if not isinstance(input_ids, list) or not all(isinstance(i, str) for i in input_ids):
        raise ProtocolError("inputs is a list of object ids")
    # the approval covers everything the plan reads: its inputs and every object it names
    lineage = plan_lineage(node, user, ops, input_ids)
    versions = content_versions(node, [*input_ids, *referenced_ids(ops)])
    digest = plan_hash(ops, outputs, buffers)

    def input_name(i: int) -> str:
        oid = input_ids[i] if 0 <= i < len(input_ids) else "?"
        return f"asset({oid[6:]!r})" if oid.startswith("asset:") else f"in{i}"

    lines = render_plan(ops, outputs, input_name)
    # how each input was made, so the reviewer sees what the plan runs on (a mean of one
    # patient's row reads like a cohort's mean otherwise)
    from syft_kernel.core.render import render

    made: list[str] = []
    for i, oid in enumerate(input_ids):
        if not oid.startswith("asset:"):
            made.append(f"in{i} is made by:")
            made.extend(f"    {line}" for line in render(oid, node.store.provenance))
    lines = made + lines
    return _file(node, user, "plan", digest, sorted(lineage), reason,
                 _content_hash("plan", digest, input_ids, versions, sorted(lineage)),
                 "plan.request", {"plan": digest, "inputs": input_ids}, plan=json.dumps(lines),
                 inputs=json.dumps({"ids": input_ids, "versions": versions}))


@handler("budgets.request")
def _budget_request(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Ask the dataset's owners for more epsilon; approval raises the budget."""
    b = _body_dict(body, "dataset", "epsilon", "reason")
    dataset, eps, reason = field(b, "dataset", str, max_len=1000), field(b, "epsilon", float), b["reason"]
    if node.db.dataset(dataset) is None:
        raise NotFound(f"no dataset {dataset!r}")
    if not 0 < eps < 1e6:
        raise InvalidArgument("ask for a positive epsilon")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("say why you need more budget: request(…, reason='…')")
    if not node.ledger.status(user.name, str(dataset)):
        raise InvalidArgument(f"you have no budget on {dataset!r} yet: the owner sets the first one")
    return _file(node, user, "budget", str(dataset), [f"{dataset}/*"], reason,
                 _content_hash("budget", dataset, float(eps), user.name), "budget.request",
                 {"dataset": dataset, "epsilon": eps}, inputs=json.dumps({"epsilon": float(eps)}))


def grant_reader(node: DataNode, obj: StoredObject, user: str, request_id: str) -> None:
    """A run of an approved plan: its private results are released to the requester."""
    _persist(node, obj)
    with node.db.tx() as c:
        c.execute("INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)",
                  (obj.id, user, request_id))


def job_finished(node: DataNode, request_id: str, outcome: JobOutcome) -> None:
    """Record a code run's end; its output becomes the requester's, released by the approval."""
    row = node.db.request(request_id)
    if row is None:
        return
    now = time.time()
    if outcome.ok and outcome.value is not None:
        obj = StoredObject("o" + secrets.token_hex(12), outcome.value, row["requester"],
                           provenance=None)
        size = _persist(node, obj)
        node.store.adopt(obj)
        with node.db.tx() as c:
            c.execute("UPDATE requests SET run_status='done', result_id=?, size=? WHERE id=?", (obj.id, size, request_id))
            c.execute("INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)",
                      (obj.id, row["requester"], request_id))
            c.execute("INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'code.run', ?, ?)",
                      (now, row["requester"], request_id, json.dumps({"result": "done", "bytes": size})))
        log.info("code request %s finished (%d bytes of output)", request_id, size)
    else:
        with node.db.tx() as c:
            c.execute("UPDATE requests SET run_status='failed', run_error=? WHERE id=?", (outcome.error, request_id))
            c.execute("INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'code.run', ?, ?)",
                      (now, row["requester"], request_id,
                       json.dumps({"result": "failed", "error": outcome.error, "detail": outcome.detail})))
        log.warning("code request %s failed: %s", request_id, outcome.error)
    node.notify(row["requester"], {"event": "job.finished", "request": request_id})
    node.notify_owners({"event": "job.finished", "request": request_id})
