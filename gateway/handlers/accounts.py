"""Account requests: a scientist not yet registered on a node asks for an account through the
gateway (the node admits only keys it knows, so it never talks to strangers); the node fetches
the request, files it in its owners' queue and reports each step back."""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, NotFound, QuotaExceeded

from ..db import OPEN
from ..state import Gateway, Peer
from . import member

log = logging.getLogger("syft_kernel.gateway")
STEPS = {"forwarding": ("filed", "approved", "denied"), "filed": ("approved", "denied")}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k] for k in ("id", "node", "name", "status", "comment", "request", "reason", "created_at", "updated_at")
    }


def request(gw: Gateway, peer: Peer, body: s.GatewayAccountRequest) -> dict[str, Any]:
    reason = body.reason
    if not reason.strip() or len(reason) > 5000:
        raise InvalidArgument("say why you need an account: request_account(node, reason='…'), up to 5000 characters")
    if body.signing_key is not None and not re.fullmatch(r"[0-9a-f]{64}", body.signing_key):
        raise InvalidArgument("a signing key is 64 hex characters (the signing_key in NAME.pub)")
    node = gw.db.node(body.node)
    if node is None or node["status"] != "admitted":
        raise NotFound(f"no node {body.node!r} on {gw.name}: see net.nodes")
    if node["public_key"] == peer.public_key:
        raise InvalidArgument("a node does not ask itself for an account")
    now = time.time()
    with gw.db.tx() as c:
        same = c.execute(
            "SELECT * FROM accounts WHERE node=? AND public_key=? AND status IN (?, ?)",
            (body.node, peer.public_key, *OPEN),
        ).fetchone()
        if same is not None:
            if same["name"] != body.name:
                raise InvalidArgument(
                    f"you already asked {body.node} for an account as {same['name']!r} ({same['id']}): wait for it"
                )
            return _public(dict(same))
        (open_,) = c.execute(
            "SELECT COUNT(*) FROM accounts WHERE public_key=? AND status IN (?, ?)", (peer.public_key, *OPEN)
        ).fetchone()
        if open_ >= gw.config.max_open_accounts:
            raise QuotaExceeded(
                f"you have {open_} account requests waiting (at most {gw.config.max_open_accounts}): "
                "wait for their answers before asking more nodes",
                limit="account requests",
            )
        (for_node,) = c.execute(
            "SELECT COUNT(*) FROM accounts WHERE node=? AND status IN (?, ?)", (body.node, *OPEN)
        ).fetchone()
        if for_node >= gw.config.max_accounts_per_node:
            raise QuotaExceeded(
                f"{body.node} has {for_node} account requests waiting (at most {gw.config.max_accounts_per_node}): "
                "ask again once its owners have decided some",
                limit="account requests",
            )
        c.execute("DELETE FROM accounts WHERE status='denied' AND updated_at < ?", (now - 30 * 86400,))
        account_id = "a" + secrets.token_hex(8)
        c.execute(
            "INSERT INTO accounts(id, node, name, public_key, signing_key, reason, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'forwarding', ?, ?)",
            (account_id, body.node, body.name, peer.public_key, body.signing_key, reason, now, now),
        )
    log.info("account request %s for %s on %s", account_id, body.name, body.node)
    gw.notify_node(node["public_key"], {"event": "accounts.pending"})
    row = gw.db.account(account_id)
    assert row is not None
    return _public(row)


def status(gw: Gateway, peer: Peer, body: s.GatewayAccountStatus) -> dict[str, Any]:
    row = gw.db.account(body.id)
    if row is None or row["public_key"] != peer.public_key:
        raise NotFound(f"no account request {body.id!r} of yours")
    return _public(row)


def pending(gw: Gateway, peer: Peer, body: s.GatewayAccountsPending) -> dict[str, Any]:
    """The account requests waiting for this node to file them."""
    node = member(peer)
    rows = gw.db.accounts(str(node["name"]), "forwarding")
    keys = ("id", "name", "public_key", "signing_key", "reason", "created_at")
    return {"accounts": [{k: r[k] for k in keys} for r in rows]}


def settle(gw: Gateway, peer: Peer, body: s.GatewayAccountSettle) -> dict[str, Any]:
    """The node reports a step: filed in its queue, approved (the key is registered) or denied."""
    node = member(peer, admitted=False)
    row = gw.db.account(body.id)
    if row is None or row["node"] != node["name"]:
        raise NotFound(f"no account request {body.id!r} for {node['name']}")
    if row["status"] == body.status:
        return _public(row)
    if body.status not in STEPS.get(row["status"], ()):
        raise InvalidArgument(f"account request {body.id} is {row['status']}: it cannot become {body.status}")
    with gw.db.tx() as c:
        c.execute(
            "UPDATE accounts SET status=?, comment=?, request=?, updated_at=? WHERE id=?",
            (body.status, body.comment, body.request or row["request"], time.time(), body.id),
        )
    log.info("account request %s on %s: %s", body.id, node["name"], body.status)
    fresh = gw.db.account(body.id)
    assert fresh is not None
    return _public(fresh)
