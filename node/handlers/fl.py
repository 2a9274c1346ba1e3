"""Federated learning: a training plan filed for the owners' approval, then its rounds.

``fl.submit`` checks the model graph (every op allowlisted, ``core.fl_graph``) and the plan
(``core.fl_train``) and files a ``training`` request that shows the owner the graph as lines,
the parameter count, loss, optimizer, rounds, epochs, batch size, the assets and what leaves
the node. Once approved, ``fl.fit`` and ``fl.evaluate`` run the job's rounds in its sandboxed
trainer (``node/fl.py``) and reply when the round is done: at most the approved number of
rounds, in order, each released once (asking for the last round again gives the same update,
never a new one), and one evaluation per round. A changed model, loss, optimizer or round count
is a different request. ``fl.stop`` ends a job, by its scientist or an owner.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

from syft_kernel.core import fl_graph, fl_train
from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, NotFound, PermissionDenied, RemoteError, Unauthorized

from ..fl import CallResult
from ..grants import content_versions
from ..requests import _content_hash, _file, public_request
from ..state import DataNode, User
from . import Buffers, Later, Reply

log = logging.getLogger("syft_kernel.node")
MAX_ATTEMPTS = 3  # a round that failed this often is not tried again (the owner's log says why)


def _frame_columns(node: DataNode, user: User, obj_id: str, what: str) -> tuple[dict[str, Any], frozenset[str]]:
    """An asset's public schema (column → dtype) and lineage; the job trains on whole assets."""
    import pandas as pd

    if not obj_id.startswith("asset:"):
        raise InvalidArgument(
            f"{what} is a dataset's asset pointer (client.datasets['name'].assets['asset'], or "
            "net.datasets.pointers(…)): a federated job trains on whole assets"
        )
    value = node.store.get(obj_id, user.name, is_owner=False)  # NotFound for an asset that is not there
    if not isinstance(value.value, pd.DataFrame):
        raise InvalidArgument(f"{what} ({obj_id[6:]}) is not a table: a federated job trains on a table's columns")
    return {str(c): value.value[c].dtype for c in value.value.columns}, value.lineage


def _check_columns(dtypes: dict[str, Any], plan: dict[str, Any], what: str) -> list[str]:
    feats = fl_train.feature_columns(list(dtypes), plan)
    for c in feats:
        if dtypes[c].kind not in "biuf":
            raise InvalidArgument(f"{what}'s column {c!r} is {dtypes[c]}, not numbers: leave it out with features=[…]")
    kinds = "biu" if plan["loss"] in fl_train.CLASSIFICATION else "biuf"
    if dtypes[plan["target"]].kind not in kinds:
        need = "class numbers (integers)" if kinds == "biu" else "numbers"
        raise InvalidArgument(
            f"{what}'s target {plan['target']!r} is {dtypes[plan['target']]}; {plan['loss']} needs {need}"
        )
    return feats


def _lines(checked: fl_graph.CheckedGraph, plan: dict[str, Any], spec: dict[str, Any], feats: list[str]) -> list[str]:
    """What the owner reviews: the whole training plan and what leaves the node."""
    r, e = plan["rounds"], plan["local_epochs"]
    data = spec["data"][6:]
    shown = ", ".join(feats[:4]) + (f", … {feats[-1]}" if len(feats) > 4 else "")
    lines = [
        f"Federated training on {data}: {r} round(s) of {e} local epoch(s), batches of {plan['batch_size']}",
        f"model: {checked.parameters:,} trained parameters",
        *(f"    {line}" for line in checked.lines()),
        f"loss: {plan['loss']}; optimizer: {fl_train.describe_optimizer(plan['optimizer'])}",
    ]
    if plan["proximal_mu"] > 0:
        lines.append(f"proximal term (FedProx): mu = {plan['proximal_mu']:g}")
    if spec.get("strategy"):
        lines.append(f"aggregation, at the scientist: {spec['strategy']}")
    lines.append(f"features: {len(feats)} column(s) ({shown}); target: {plan['target']!r}")
    if spec.get("evaluate"):
        lines.append(f"evaluation on {spec['evaluate'][6:]}")
    buffers = sum(math.prod(shape) for k, (shape, _) in checked.weights.items() if k not in checked.trainable)
    kept = f", the model's {buffers:,} other state numbers (e.g. BatchNorm's running statistics)" if buffers else ""
    lines.append(
        f"leaves the node, each round: the trained weights ({checked.parameters:,} numbers){kept}, the number "
        "of training examples and the mean training loss"
    )
    if spec.get("evaluate"):
        lines.append(f"and for each of at most {r + 1} evaluations: the loss, the accuracy and the number of examples")
    return lines


def submit(node: DataNode, user: User, body: s.FlSubmit, buffers: Buffers) -> Reply:
    """File a training plan for review; nothing trains until the owners approve it."""
    if not body.reason.strip():
        raise InvalidArgument("say why you need this training: job.request(reason='…')")
    plan = fl_train.check_plan(body.plan)
    checked = fl_graph.check_graph(body.graph, node.limits.fl_max_parameters)
    dtypes, lineage = _frame_columns(node, user, body.data, "data")
    feats = _check_columns(dtypes, plan, "data")
    ids = [body.data]
    if body.evaluate is not None:
        eval_types, eval_lineage = _frame_columns(node, user, body.evaluate, "evaluate")
        if _check_columns(eval_types, plan, "evaluate") != feats:
            raise InvalidArgument("the evaluation asset's feature columns are not the training asset's")
        lineage |= eval_lineage
        ids.append(body.evaluate)
    spec = {"graph": body.graph, "plan": plan, "data": body.data, "evaluate": body.evaluate, "strategy": body.strategy}
    versions = content_versions(node, ids)
    lines = _lines(checked, plan, spec, feats)
    log.info("%s filed a training plan on %s (%d parameters)", user.name, body.data, checked.parameters)
    return _file(
        node,
        user,
        "training",
        body.data[6:],
        sorted(lineage),
        body.reason,
        _content_hash("training", body.graph, plan, ids, body.strategy, versions),
        "fl.submit",
        {"data": body.data, "evaluate": body.evaluate, "parameters": checked.parameters, "rounds": plan["rounds"]},
        plan=json.dumps(lines),
        source=json.dumps(spec),
        inputs=json.dumps({"ids": ids, "versions": versions}),
    )


def training_limits(node: DataNode, given: Any) -> dict[str, float]:
    """A job's limits: the node's FL settings, lowered or raised by the approving owner."""
    out = {"timeout": float(node.limits.fl_round_timeout_s), "memory_mb": float(node.limits.fl_memory_mb)}
    if given:
        if not isinstance(given, dict):
            raise InvalidArgument("limits are a map")
        for k, v in given.items():
            if k not in out or type(v) not in (int, float) or not 0 < v <= 10**6:
                raise InvalidArgument(f"a training's limit {k!r} is one of {', '.join(out)} with a positive value")
            out[k] = float(v)
    return out


def _job(node: DataNode, user: User, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    row = node.db.request(request_id)
    if row is None or row["kind"] != "training" or row["requester"] != user.name:
        raise NotFound(f"no training request {request_id!r} of yours on {node.name}")
    if row["status"] != "approved":
        raise PermissionDenied(
            f"training request {request_id} is {row['status']}: its rounds run only once the owners approve it"
            + (" (wait for them: job.wait())" if row["status"] == "pending" else " (file a new one)"),
            request_hint="job.request(reason='…')",
        )
    if row["run_status"] == "stopped":
        raise PermissionDenied(f"training request {request_id} was {row['run_error'] or 'stopped'}: file a new request")
    inputs = row["inputs"]
    if content_versions(node, inputs["ids"]) != inputs["versions"]:
        raise PermissionDenied(
            "the data this training was approved for has changed since (a dataset was uploaded again): the "
            "approval covers the old data only; request the training again"
        )
    return row, json.loads(row["source"])


def _checked(node: DataNode, request_id: str, spec: dict[str, Any]) -> fl_graph.CheckedGraph:
    got = node.fl_graphs.get(request_id)
    if got is None:
        got = node.fl_graphs[request_id] = fl_graph.check_graph(spec["graph"], node.limits.fl_max_parameters)
    return got


def _weights(checked: fl_graph.CheckedGraph, buffers: Buffers) -> bytes:
    if len(buffers) != 1:
        raise InvalidArgument("send the model's weights (safetensors) as the message's one buffer")
    data = buffers[0]
    raw = data.buffer if hasattr(data, "buffer") else data  # a zmq frame, or bytes
    fl_graph.check_weights(checked, raw)
    return bytes(raw)


def _update_path(node: DataNode, request_id: str, round_: int) -> Any:
    return node.objects_dir / f"fl-{request_id}-{round_}.safetensors"


def _claim(node: DataNode, request_id: str, kind: str, round_: int, rounds: int) -> dict[str, Any] | None:
    """Mark a call running, atomically; returns the done call to replay instead, if it is one."""
    with node.db.tx() as c:
        rows = {
            r[0]: {"status": r[1], "attempts": r[2], "metrics": r[3]}
            for r in c.execute(
                "SELECT round, status, attempts, metrics FROM fl_calls WHERE request_id=? AND kind=?",
                (request_id, kind),
            ).fetchall()
        }
        fits_done = max(
            (
                r[0]
                for r in c.execute(
                    "SELECT round FROM fl_calls WHERE request_id=? AND kind='fit' AND status='done'", (request_id,)
                ).fetchall()
            ),
            default=0,
        )
        here = rows.get(round_)
        if kind == "fit":
            if not 1 <= round_ <= rounds:
                raise InvalidArgument(f"round is from 1 to {rounds}, the approved plan's rounds")
            if here is not None and here["status"] == "done":
                if round_ != fits_done:
                    raise PermissionDenied(f"round {round_} was trained already; round {fits_done + 1} is next")
                return here  # the same update again: it was released already
            if round_ < fits_done:  # rounds only go forward (a node not sampled skips some)
                raise PermissionDenied(f"round {round_} is behind this node's last trained round ({fits_done})")
        else:
            if not 0 <= round_ <= rounds:
                raise InvalidArgument(f"round is from 0 (the first model) to {rounds}")
            if here is not None and here["status"] == "done":
                return here
        if here is not None and here["status"] == "running":
            raise InvalidArgument(
                f"round {round_}'s {'training' if kind == 'fit' else 'evaluation'} is running already"
            )
        if here is not None and here["attempts"] >= MAX_ATTEMPTS:
            raise PermissionDenied(
                f"round {round_} failed {here['attempts']} times; it is not tried again (the owner's audit log says why)"
            )
        c.execute(
            "INSERT INTO fl_calls(request_id, kind, round, status, at) VALUES (?, ?, ?, 'running', ?)"
            " ON CONFLICT(request_id, kind, round) DO UPDATE SET status='running', attempts=attempts+1, at=excluded.at",
            (request_id, kind, round_, time.time()),
        )
    return None


def _finish(node: DataNode, row: dict[str, Any], kind: str, round_: int, result: CallResult) -> Reply:
    """Record a call's end (the update written first, then its row, in one transaction)."""
    rid, now = row["id"], time.time()
    if result.ok and kind == "fit":
        try:
            fl_graph.check_weights(_checked(node, rid, json.loads(row["source"])), result.weights)
        except InvalidArgument as e:
            result = CallResult(False, {}, error="the trainer's update was malformed", detail=e.message)
    now_row = node.db.request(rid)
    if result.ok and (now_row is None or now_row["run_status"] == "stopped"):  # stopped meanwhile: nothing leaves
        result = CallResult(False, {}, error="the job was stopped during the round; nothing was released")
    if result.ok and kind == "fit":
        path = _update_path(node, rid, round_)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(result.weights)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    with node.db.tx() as c:
        if result.ok:
            c.execute(
                "UPDATE fl_calls SET status='done', metrics=?, error='', at=? WHERE request_id=? AND kind=? AND round=?",
                (json.dumps(result.metrics), now, rid, kind, round_),
            )
            if kind == "fit":
                rounds = json.loads(row["source"])["plan"]["rounds"]
                c.execute(
                    "UPDATE requests SET run_status=? WHERE id=? AND run_status IS NOT 'stopped'",
                    ("finished" if round_ >= rounds else "training", rid),
                )
        else:
            c.execute(
                "UPDATE fl_calls SET status='failed', error=?, at=? WHERE request_id=? AND kind=? AND round=?",
                (result.error, now, rid, kind, round_),
            )
        detail = {"round": round_, "result": "done" if result.ok else "failed"}
        if result.ok:
            detail["metrics"] = result.metrics
        else:
            detail |= {"error": result.error, "detail": result.detail}
        c.execute(
            "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (now, row["requester"], f"fl.{kind}", rid, json.dumps(detail)),
        )
    if result.ok and kind == "fit":  # only the last round's update is kept (to give it again if asked)
        for old in node.objects_dir.glob(f"fl-{rid}-*.safetensors"):
            if old.name != f"fl-{rid}-{round_}.safetensors":
                old.unlink(missing_ok=True)
    node.notify_owners({"event": "fl.round", "request": rid, "kind": kind, "round": round_, "ok": result.ok})
    if not result.ok:
        raise RemoteError(f"{node.name}: {result.error}")
    return {"request": rid, "round": round_, "metrics": result.metrics, "replayed": False}, (
        [result.weights] if kind == "fit" else []
    )


def _call(node: DataNode, user: User, kind: str, request_id: str, round_: int, buffers: Buffers) -> Reply:
    row, spec = _job(node, user, request_id)
    if kind == "evaluate" and spec.get("evaluate") is None:
        raise InvalidArgument("this job has no evaluation asset: give evaluate=… when you make the job")
    checked = _checked(node, request_id, spec)
    weights = _weights(checked, buffers)  # checked before anything is claimed or run
    done = _claim(node, request_id, kind, round_, spec["plan"]["rounds"])
    if done is not None:  # asked again (a lost reply, a resumed job): what was released, unchanged
        out: list[Any] = []
        if kind == "fit":
            out = [_update_path(node, request_id, round_).read_bytes()]
        body = {"request": request_id, "round": round_, "metrics": json.loads(done["metrics"]), "replayed": True}
        return body, out
    try:
        trainer = node.fl_runner().trainer(request_id, spec, row["limits"] or training_limits(node, None))
    except BaseException:  # no trainer to be had now (too many jobs training): the round was not run
        with node.db.tx() as c:
            c.execute(
                "UPDATE fl_calls SET status='failed', attempts=attempts-1, error='no trainer was free'"
                " WHERE request_id=? AND kind=? AND round=?",
                (request_id, kind, round_),
            )
        raise
    future = node.fl_runner().submit(trainer, kind, round_, weights, lambda r: _finish(node, row, kind, round_, r))
    return Later(future), []


def fit(node: DataNode, user: User, body: s.FlFit, buffers: Buffers) -> Reply:
    """One round of local training from the weights sent; replies with the trained weights."""
    return _call(node, user, "fit", body.request, body.round, buffers)


def evaluate(node: DataNode, user: User, body: s.FlEvaluate, buffers: Buffers) -> Reply:
    """The weights' loss and accuracy on the job's evaluation asset."""
    return _call(node, user, "evaluate", body.request, body.round, buffers)


def stop(node: DataNode, user: User, body: s.FlStop, buffers: Buffers) -> Reply:
    """End a job: its scientist or an owner; its trainer is killed and no round runs again."""
    row = node.db.request(body.request)
    if row is None or row["kind"] != "training" or (row["requester"] != user.name and not user.is_owner):
        raise NotFound(f"no training request {body.request!r} of yours on {node.name}")
    if row["status"] != "approved":
        if user.is_owner:
            raise InvalidArgument(f"training request {body.request} is {row['status']}: deny it instead")
        raise Unauthorized(f"training request {body.request} is {row['status']}: nothing is running to stop")
    why = f"stopped by {user.name}" + (f": {body.reason}" if body.reason else "")
    with node.db.tx() as c:
        c.execute("UPDATE requests SET run_status='stopped', run_error=? WHERE id=?", (why, body.request))
        c.execute(
            "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'fl.stop', ?, ?)",
            (time.time(), user.name, body.request, json.dumps({"reason": body.reason})),
        )
    node.fl_runner().stop(body.request)
    event = {"event": "fl.stopped", "request": body.request, "by": user.name}
    node.notify(row["requester"], event)
    node.notify_owners(event)
    log.info("training request %s %s", body.request, why)
    return status(node, user, s.FlStatus(request=body.request), [])


def status(node: DataNode, user: User, body: s.FlStatus, buffers: Buffers) -> Reply:
    """A job's rounds: trained, evaluated, failed (with the reason the scientist may read)."""
    row = node.db.request(body.request)
    if row is None or row["kind"] != "training" or (row["requester"] != user.name and not user.is_owner):
        raise NotFound(f"no training request {body.request!r} of yours on {node.name}")
    calls = node.db.conn.execute(
        "SELECT kind, round, status, attempts, metrics, error FROM fl_calls WHERE request_id=? ORDER BY kind, round",
        (body.request,),
    ).fetchall()
    return {
        "request": public_request(node, row, user),
        "run_status": row["run_status"],
        "calls": [
            {
                "kind": k,
                "round": r,
                "status": st,
                "attempts": a,
                "metrics": json.loads(m) if st == "done" else {},
                "error": e,
            }
            for k, r, st, a, m, e in calls
        ],
    }, []
