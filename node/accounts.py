"""Account requests from the network: a scientist asked for an account through the gateway.

The request is filed in the owners' queue (kind ``account``) with its key; any owner of the node
decides it, signed like every decision. Approval registers the key with the data_scientist role.
Each step is written, in the same transaction, to ``network_outbox`` for the agent to report to
the gateway, so a node killed between the two loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
import time
from typing import Any

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.keys import check_public_key
from syft_kernel.core.names import check_name

from .state import DataNode

log = logging.getLogger("syft_kernel.node")
ACCOUNTS = "@accounts"  # what an account request touches: the node's users, decided by its owners


def owners_entry(node: DataNode) -> dict[str, Any]:
    """The governance entry of an account request: any one of the node's owners decides."""
    owners = sorted(u["name"] for u in node.db.users() if u["role"] == "owner")
    return {"name": f"{node.name} accounts", "owners": owners, "policy": {"kind": "single"}}


def _refusal(node: DataNode, name: str, key: str) -> str | None:
    users = node.db.users()
    if any(u["public_key"] == key for u in users):
        return f"this key is registered on {node.name} already: log in with it (net.login({node.name!r}))"
    if any(u["name"] == name for u in users):
        return f"{node.name} already has a user named {name!r}: ask again with another name (name=…)"
    had = node.db.conn.execute(
        "SELECT 1 FROM audit WHERE action='users.add' AND target=? UNION SELECT 1 FROM objects WHERE owner=?"
        " UNION SELECT 1 FROM requests WHERE requester=? AND kind!='account' LIMIT 1",
        (name, name, name),
    ).fetchone()
    if had is not None:  # a name with a history is never handed to a stranger
        return f"{node.name} had a user named {name!r}: ask again with another name (name=…)"
    return None


def file_account(node: DataNode, acct: dict[str, Any]) -> None:
    """File one account request from the gateway (or refuse it), and its step for the gateway."""
    account_id = str(acct.get("id", ""))[:100]
    try:
        name = check_name(acct.get("name"), "user")
        key = check_public_key(acct.get("public_key"))  # type: ignore[arg-type]
        signing = acct.get("signing_key")
        if signing is not None and not (isinstance(signing, str) and re.fullmatch(r"[0-9a-f]{64}", signing)):
            raise InvalidArgument("a signing key is 64 hex characters")
        reason = str(acct.get("reason", ""))[:5000]
        if not reason.strip():
            raise InvalidArgument("an account request says why")
    except InvalidArgument as e:
        _outbox_only(node, account_id, "denied", e.message)
        return
    with node.db.tx() as c:
        done = c.execute("SELECT 1 FROM network_outbox WHERE account=?", (account_id,)).fetchone()
        known = c.execute(
            "SELECT id FROM requests WHERE kind='account' AND json_extract(inputs, '$.account')=?", (account_id,)
        ).fetchone()
        if done or known:
            return  # filed before (the gateway asked again before it heard)
        refusal = _refusal(node, name, key)
        if refusal is None:
            (waiting,) = c.execute("SELECT COUNT(*) FROM requests WHERE kind='account' AND status='pending'").fetchone()
            if waiting >= node.limits.max_pending_requests:
                refusal = f"{node.name} has too many account requests waiting: ask again later"
        if refusal is not None:
            _step(c, account_id, "denied", refusal)
            log.info("refused an account request for %s: %s", name, refusal)
            return
        request_id = "r" + secrets.token_hex(8)
        now = time.time()
        membership = node.network.membership or {}
        gateway = str(membership.get("connection", {}).get("name", ""))
        inputs = {"account": account_id, "public_key": key, "signing_key": signing, "name": name, "gateway": gateway}
        content = json.dumps(["account", name, key, signing, account_id], sort_keys=True)
        c.execute(
            "INSERT INTO requests(id, requester, kind, target, datasets, reason, status, content_hash, inputs,"
            " plan, created_at) VALUES (?, ?, 'account', ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (
                request_id,
                name,
                name,
                json.dumps([ACCOUNTS]),
                reason,
                hashlib.sha256(content.encode()).hexdigest(),
                json.dumps(inputs),
                json.dumps(
                    [f"an account for {name} (data_scientist), key {key[:8]}…, asked through the network {gateway}"]
                ),
                now,
            ),
        )
        c.execute(
            "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, 'account.request', ?, ?)",
            (now, name, request_id, json.dumps({"account": account_id, "key": key[:8]})),
        )
        _step(c, account_id, "filed", "", request_id)
    log.info("filed account request %s for %s", request_id, name)
    node.notify_owners({"event": "request.new", "request": request_id})


def _step(c: sqlite3.Connection, account_id: str, status: str, comment: str, request: str = "") -> None:
    c.execute(
        "INSERT OR REPLACE INTO network_outbox(account, status, comment, request) VALUES (?, ?, ?, ?)",
        (account_id, status, comment, request),
    )


def _outbox_only(node: DataNode, account_id: str, status: str, comment: str) -> None:
    with node.db.tx() as c:
        _step(c, account_id, status, comment)


def check_decision(node: DataNode, row: dict[str, Any], decision: str) -> None:
    """Before an approval: the name and key must still be free."""
    if decision == "approve":
        refusal = _refusal(node, row["inputs"]["name"], row["inputs"]["public_key"])
        if refusal is not None:
            raise InvalidArgument(f"{refusal.split(':')[0]}: deny this request instead")


def settle(c: sqlite3.Connection, node: DataNode, row: dict[str, Any], status: str, comment: str) -> None:
    """Inside the decision's transaction: register the key (approved) and note the step."""
    inputs = row["inputs"]
    if status == "approved":
        try:
            c.execute(
                "INSERT INTO users(name, public_key, role, signing_key, created_at)"
                " VALUES (?, ?, 'data_scientist', ?, ?)",
                (inputs["name"], inputs["public_key"], inputs.get("signing_key"), time.time()),
            )
        except sqlite3.IntegrityError:  # another owner added the name or key meanwhile
            raise InvalidArgument(
                f"{inputs['name']!r} or this key was registered meanwhile: deny this request instead"
            ) from None
    _step(c, inputs["account"], status, comment, row["id"])
