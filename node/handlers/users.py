"""Users: added with their public key (and signing key, for owners), listed, removed."""

from __future__ import annotations

import logging

from syft_kernel.core import codec
from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, NotFound
from syft_kernel.core.keys import check_public_key

from ..state import ROLES, DataNode, User
from . import Buffers, Reply
from .budgets import check_budget

log = logging.getLogger("syft_kernel.node")


def add(node: DataNode, user: User, body: s.UsersAdd, buffers: Buffers) -> Reply:
    name = body.name
    if body.role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {codec.short_repr(body.role)}")
    key = check_public_key(body.public_key)
    existing = {u["name"]: u for u in node.db.users()}
    if name in existing:
        raise InvalidArgument(f"user {name!r} exists already: remove them first to change their key or role")
    if any(u["public_key"] == key for u in existing.values()):
        raise InvalidArgument("that public key belongs to another user: every user has their own keypair")
    signing = body.signing_key
    if signing is not None and len(signing) != 64:
        raise InvalidArgument("a signing key is 64 hex characters (the signing_key in NAME.pub)")
    if body.role == "owner" and not signing:
        raise InvalidArgument("an owner needs a signing key to approve requests: pass their NAME.pub file")
    budget = None
    if body.budget is not None:
        if set(body.budget) - {"epsilon", "delta"} or "epsilon" not in body.budget:
            raise InvalidArgument("a budget is sk.Budget(epsilon=…, delta=…)")
        if body.role == "owner":
            raise InvalidArgument("a budget is for a data scientist: owners read their data without one")
        budget = check_budget(body.budget["epsilon"], body.budget.get("delta", 0.0))
    node.db.add_user(name, key, body.role, signing)
    if budget is not None:
        node.ledger.set_default(name, *budget, node.db.dataset_names())
    node.reload_users()
    node.db.audit(
        user.name, "users.add", name, role=body.role, **({"epsilon": budget[0], "delta": budget[1]} if budget else {})
    )
    log.info("%s added user %s (%s)", user.name, name, body.role)
    return {"name": name, "role": body.role}, []


def remove(node: DataNode, user: User, body: s.UsersRemove, buffers: Buffers) -> Reply:
    if body.name == user.name:
        raise InvalidArgument("you cannot remove yourself: another owner must do it")
    if not node.db.remove_user(body.name):
        raise NotFound(f"no user {body.name!r}")
    node.ledger.forget_default(body.name)
    node.reload_users()
    node.db.audit(user.name, "users.remove", body.name)
    log.info("%s removed user %s", user.name, body.name)
    return {"removed": body.name}, []


def list_(node: DataNode, user: User, body: s.UsersList, buffers: Buffers) -> Reply:
    return {"users": node.db.users()}, []
