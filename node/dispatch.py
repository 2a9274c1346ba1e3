"""The one table of what the node answers: message type → (role needed, typed body, handler).

``handle`` decodes the body once against ``core.schema`` (so every handler gets a checked,
typed body), checks the role and calls the handler. It raises only ``SyftError`` subclasses for
the server loop to turn into error replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from syft_kernel.core import schema
from syft_kernel.core.errors import ProtocolError, Unauthorized

from .handlers import audit, budgets, datasets, dp, fl, network, node, objects, requests, users
from .state import DataNode, User

OWNER = "owner"
Handler = Callable[[DataNode, User, Any, Sequence[Any]], tuple[Any, list[Any]]]

HANDLERS: dict[str, tuple[str | None, Handler]] = {
    "hello": (None, node.hello),
    "node.stats": (None, node.stats),
    "users.add": (OWNER, users.add),
    "users.remove": (OWNER, users.remove),
    "users.list": (OWNER, users.list_),
    "datasets.upload": (OWNER, datasets.upload),
    "datasets.delete": (OWNER, datasets.delete),
    "datasets.list": (None, datasets.list_),
    "datasets.get": (None, datasets.get),
    "datasets.mock": (None, datasets.mock),
    "asset.pointer": (None, datasets.asset_pointer),
    "run": (None, objects.run),
    "get": (None, objects.get),
    "objects.describe": (None, objects.describe_),
    "del": (None, objects.delete),
    "budgets.set": (OWNER, budgets.set_),
    "budgets.get": (None, budgets.get),
    "budgets.request": (None, requests.budget_request),
    "dp.query": (None, dp.query),
    "audit.list": (OWNER, audit.list_),
    "requests.create": (None, requests.create),
    "code.submit": (None, requests.submit),
    "requests.list": (None, requests.list_),
    "requests.get": (None, requests.get),
    "requests.decide": (OWNER, requests.decide),
    "plans.request": (None, requests.plan_request),
    "fl.submit": (None, fl.submit),
    "fl.fit": (None, fl.fit),
    "fl.evaluate": (None, fl.evaluate),
    "fl.stop": (None, fl.stop),
    "fl.status": (None, fl.status),
    "network.join": (OWNER, network.join),
    "network.leave": (OWNER, network.leave),
    "network.status": (OWNER, network.status),
}
assert set(HANDLERS) == set(schema.MESSAGES), "every message type has one body and one handler"


def handle(state: DataNode, user: User, msg_type: str, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Route one authenticated message to its handler with its typed body."""
    entry = HANDLERS.get(msg_type)
    if entry is None:
        raise ProtocolError(f"unknown message type {msg_type!r}; this node knows {', '.join(sorted(HANDLERS))}")
    role, fn = entry
    if role == OWNER and not user.is_owner:
        raise Unauthorized(f"{msg_type} is for data owners; {user.name} is a {user.role}")
    state.counters[f"{user.name}:{msg_type}"] += 1
    state.counters["messages"] += 1
    typed = schema.decode(msg_type, body)
    return fn(state, user, typed, buffers)
