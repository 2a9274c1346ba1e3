"""DP budgets: set by an owner per (scientist, dataset), read by their holder (and owners)."""

from __future__ import annotations

from typing import Any

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, NotFound

from ..state import DataNode, User
from . import Buffers, Reply


def set_(node: DataNode, user: User, body: s.BudgetsSet, buffers: Buffers) -> Reply:
    who, dataset = body.user, body.dataset
    if node.db.dataset(dataset) is None:
        raise NotFound(f"no dataset {dataset!r}")
    if who not in {u["name"] for u in node.db.users()}:
        raise NotFound(f"no user {who!r}")
    eps, delta = check_budget(body.epsilon, body.delta)
    node.ledger.set_budget(who, dataset, float(eps), float(delta))
    node.db.audit(user.name, "budgets.set", dataset, scientist=who, epsilon=eps, delta=delta)
    status = node.ledger.status(who, dataset)
    event = {"event": "budget.changed", "dataset": dataset, "user": who}
    node.notify(who, event)
    node.notify_owners(event)
    return {"budget": status}, []


def check_budget(epsilon: float, delta: float) -> tuple[float, float]:
    """A budget's epsilon (non-negative, finite) and delta (in [0, 1))."""
    if not 0 <= epsilon < 1e6 or epsilon != epsilon:
        raise InvalidArgument("epsilon is a non-negative number")
    if not 0 <= delta < 1:
        raise InvalidArgument("delta is between 0 (inclusive) and 1 (exclusive)")
    return float(epsilon), float(delta)


def get(node: DataNode, user: User, body: s.BudgetsGet, buffers: Buffers) -> Reply:
    who = body.user if user.is_owner and body.user else user.name
    dataset = body.dataset or None
    out: dict[str, Any] = {"user": who, "budgets": node.ledger.status(who, dataset)}
    if body.history:  # a summary view (the dashboard) asks without it
        out["history"] = node.ledger.history(who, dataset)
    if user.is_owner and dataset:
        d = node.db.dataset(dataset)
        if d and d.get("subject_limit"):
            out["spent_subjects"] = node.ledger.spent_subjects(dataset, float(d["subject_limit"]))
    return out, []
