"""Requests: for a private object, a plan, a code run or more budget; listed, read, decided."""

from __future__ import annotations

import ast
import json
import logging
import time

from syft_kernel.core import codec
from syft_kernel.core import schema as s
from syft_kernel.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProtocolError,
    Unauthorized,
)
from syft_kernel.core.executor import _validate
from syft_kernel.core.keys import decision_message, verify_signature
from syft_kernel.core.plan import plan_hash
from syft_kernel.core.render import render, render_plan

from .. import accounts, governance
from ..grants import content_versions, plan_lineage, referenced_ids
from ..jobs import JobOutcome, check_limits
from ..requests import (
    MAX_SOURCE,
    _content_hash,
    _datasets_of,
    _file,
    _persist,
    check_request_quota,
    job_finished,
    public_request,
)
from ..state import DataNode, User
from . import Buffers, Reply, fl

log = logging.getLogger("syft_kernel.node")


def create(node: DataNode, user: User, body: s.RequestsCreate, buffers: Buffers) -> Reply:
    """Ask for the release of a private object (its provenance is what the owner reviews)."""
    obj_id, reason = body.id, body.reason
    if not reason.strip() or len(reason) > 5000:
        raise InvalidArgument("say why you need the value: request(reason='…'), up to 5000 characters")
    node.store.get(obj_id, user.name, is_owner=False)  # yours, or NotFound
    obj = node.store.entry(obj_id)
    if obj is None:  # an asset itself: its pointer is not a stored object
        raise InvalidArgument(
            "a whole asset is not released through a request: compute what you need from it "
            "(a pointer operation, a plan or a code request) and request that"
        )
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
    return _file(
        node,
        user,
        "object",
        obj_id,
        lineage,
        reason,
        _content_hash("object", obj_id, plan, lineage),
        "request.create",
        {"object": obj_id, "bytes": size},
        plan=json.dumps(plan),
        size=size,
    )


def submit(node: DataNode, user: User, body: s.CodeSubmit, buffers: Buffers) -> Reply:
    """File code for review; nothing here runs it (it runs after approval, in the sandbox)."""
    source, fn_name, inputs, reason = body.source, body.fn_name, body.inputs, body.reason
    if not 0 < len(source) <= MAX_SOURCE:
        raise InvalidArgument(f"the source is a string of at most {MAX_SOURCE} characters")
    if not reason.strip():
        raise InvalidArgument("say why you need this code run: submit(…, reason='…')")
    try:
        tree = ast.parse(source)  # parsed to check its shape; nothing here runs it
    except (SyntaxError, ValueError) as e:  # ValueError: a null byte
        raise InvalidArgument(f"the code does not parse: {e}") from None
    except (MemoryError, RecursionError):  # the parser's own limits, reached by deep nesting
        raise InvalidArgument("the code nests too deeply to parse") from None
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if fn_name not in defs:
        raise InvalidArgument(f"the source must define the function {codec.short_repr(fn_name)}")
    lineage: set[str] = set()
    for obj_id in inputs.values():
        lineage |= node.store.get(obj_id, user.name, is_owner=False).lineage
        if obj_id.startswith("o"):
            obj = node.store.entry(obj_id)
            assert obj is not None
            _persist(node, obj)
    log.info("%s submitted code %s() for review", user.name, fn_name)
    return _file(
        node,
        user,
        "code",
        fn_name,
        sorted(lineage),
        reason,
        _content_hash("code", source, fn_name, inputs, content_versions(node, inputs.values())),
        "code.submit",
        {"function": fn_name, "inputs": inputs},
        source=source,
        fn_name=fn_name,
        inputs=json.dumps(inputs),
    )


def list_(node: DataNode, user: User, body: s.RequestsList, buffers: Buffers) -> Reply:
    status, requester, kind = body.status, body.requester, body.kind
    if status is not None and status not in ("pending", "approved", "denied"):
        raise InvalidArgument("status is pending, approved or denied")
    if not user.is_owner:
        requester = user.name
    rows = node.db.requests(status=status, requester=requester, kind=kind)
    return {"requests": [public_request(node, r, user) for r in rows]}, []


def get(node: DataNode, user: User, body: s.RequestsGet, buffers: Buffers) -> Reply:
    request_id = body.id
    row = node.db.request(request_id)
    if row is None:
        raise NotFound(f"no request {request_id!r}")
    return public_request(node, row, user), []


def decide(node: DataNode, user: User, body: s.RequestsDecide, buffers: Buffers) -> Reply:
    """An owner's signed decision; the dataset's policy says when the request is settled."""
    request_id, decision, comment = body.id, body.decision, body.comment
    if decision not in ("approve", "deny"):
        raise InvalidArgument("decision is approve or deny")
    if len(comment) > 5000:
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
    nonce, signature = body.nonce, body.signature
    message = decision_message(node.name, request_id, row["content_hash"], decision, nonce)
    if len(nonce) < 16 or not verify_signature(signing_key, message, signature):
        node.db.audit(user.name, "decision.bad_signature", request_id)
        raise PermissionDenied("the decision's signature does not verify with your registered signing key")
    limits = check_limits(body.limits) if row["kind"] == "code" else {}
    if row["kind"] == "training":
        limits = fl.training_limits(node, body.limits)
    if row["kind"] == "account":
        accounts.check_decision(node, row, decision)
    votes = {a["owner"]: a["decision"] for a in row["approvals"]}
    votes[user.name] = decision
    status, _ = governance.evaluate(datasets, votes)
    now = time.time()
    with node.db.tx() as c:
        try:
            c.execute(
                "INSERT INTO approvals(request_id, owner, decision, comment, nonce, signature, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, user.name, decision, comment, nonce, signature, now),
            )
        except Exception as e:  # the nonce was used before: a replayed signature
            raise PermissionDenied(
                f"this decision was already used ({e.__class__.__name__}): sign a fresh one"
            ) from None
        if status != "pending":
            c.execute(
                "UPDATE requests SET status=?, decided_at=?, comment=?, limits=?,"
                " run_status=CASE WHEN ?!='approved' THEN run_status WHEN kind='code' THEN 'queued'"
                " WHEN kind='training' THEN 'ready' ELSE run_status END"
                " WHERE id=?",
                (status, now, comment, json.dumps(limits), status, request_id),
            )
            if status == "approved" and row["kind"] == "budget":
                node.ledger.raise_budget(c, row["requester"], row["target"], float(row["inputs"]["epsilon"]))
            if row["kind"] == "account":
                accounts.settle(c, node, row, status, comment)
            if status == "approved" and row["kind"] == "object":
                c.execute(
                    "INSERT OR IGNORE INTO readers(object_id, user, request_id) VALUES (?, ?, ?)",
                    (row["target"], row["requester"], request_id),
                )
        c.execute(
            "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (now, user.name, decision, request_id, json.dumps({"comment": comment, "result": status})),
        )
    if row["kind"] == "account" and status != "pending":
        node.reload_users()  # the new user may connect at once
        node.network.wake()  # the gateway hears of it now, not at the next heartbeat
    log.info(
        "%s %s request %s (now %s)", user.name, "approved" if decision == "approve" else "denied", request_id, status
    )
    if status == "approved" and row["kind"] == "code":
        inputs = row["inputs"]
        now_hash = _content_hash("code", row["source"], row["fn_name"], inputs, content_versions(node, inputs.values()))
        if now_hash != row["content_hash"]:  # an input dataset was uploaded again since it was filed
            job_finished(
                node,
                request_id,
                JobOutcome(
                    False,
                    error=(
                        "the data this code was submitted for has changed since (a dataset was uploaded again): "
                        "the approval covers the old data only; submit the code again"
                    ),
                ),
            )
        else:
            node.start_job(request_id)
    if status == "approved" and row["kind"] == "training":  # its trainer starts now, ready for round 1
        node.fl_runner().prestart(request_id, json.loads(row["source"]), limits)
    fresh = node.db.request(request_id)
    assert fresh is not None
    info = public_request(node, fresh, user)
    event = {
        "event": "request.decided" if status != "pending" else "request.updated",
        "request": request_id,
        "status": status,
    }
    requester = next(
        (User(u["name"], u["role"], u["public_key"]) for u in node.db.users() if u["name"] == row["requester"]), None
    )
    if requester is not None:  # the requester wakes with the whole request, as they may see it
        node.notify(row["requester"], {**event, "info": public_request(node, fresh, requester)})
    node.notify_owners(event)
    return info, []


def plan_request(node: DataNode, user: User, body: s.PlansRequest, buffers: Buffers) -> Reply:
    """Ask for a plan to be approved on given inputs: its later runs' results are released."""
    ops, outputs, input_ids, reason = body.ops, body.outputs, body.inputs, body.reason
    if not reason.strip():
        raise InvalidArgument("say why you need this plan: plan.request(…, reason='…')")
    _validate(ops)
    if not all(0 <= i < len(ops) for i in outputs):
        raise ProtocolError("outputs are indices of the plan's ops")
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
    made: list[str] = []
    for i, oid in enumerate(input_ids):
        if not oid.startswith("asset:"):
            made.append(f"in{i} is made by:")
            made.extend(f"    {line}" for line in render(oid, node.store.provenance))
    lines = made + lines
    return _file(
        node,
        user,
        "plan",
        digest,
        sorted(lineage),
        reason,
        _content_hash("plan", digest, input_ids, versions, sorted(lineage)),
        "plan.request",
        {"plan": digest, "inputs": input_ids},
        plan=json.dumps(lines),
        inputs=json.dumps({"ids": input_ids, "versions": versions}),
    )


def budget_request(node: DataNode, user: User, body: s.BudgetsRequest, buffers: Buffers) -> Reply:
    """Ask the dataset's owners for more epsilon; approval raises the budget."""
    dataset, eps, reason = body.dataset, body.epsilon, body.reason
    if node.db.dataset(dataset) is None:
        raise NotFound(f"no dataset {dataset!r}")
    if not 0 < eps < 1e6:
        raise InvalidArgument("ask for a positive epsilon")
    if not reason.strip():
        raise InvalidArgument("say why you need more budget: request(…, reason='…')")
    if not node.ledger.status(user.name, str(dataset)):
        raise InvalidArgument(f"you have no budget on {dataset!r} yet: the owner sets the first one")
    return _file(
        node,
        user,
        "budget",
        str(dataset),
        [f"{dataset}/*"],
        reason,
        _content_hash("budget", dataset, float(eps), user.name),
        "budget.request",
        {"dataset": dataset, "epsilon": eps},
        inputs=json.dumps({"epsilon": float(eps)}),
    )
