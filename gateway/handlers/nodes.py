"""Nodes: join with a registration signed by the node's key, leave, send heartbeats; the list of
members that scientists see."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from typing import Any

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, PermissionDenied, ProtocolError, QuotaExceeded, SyftError
from syft_kernel.core.keys import check_public_key, registration_message, verify_signature

from ..state import Gateway, Peer
from . import member

log = logging.getLogger("syft_kernel.gateway")
ADDRESS = re.compile(r"\Atcp://[A-Za-z0-9.\-\[\]:]{1,200}:\d{1,5}\Z")


def hello(gw: Gateway, peer: Peer, body: s.GatewayHello) -> dict[str, Any]:
    node = peer.node
    return {
        "gateway": gw.name,
        "role": "node" if node else "scientist",
        **({"node": node["name"], "status": node["status"]} if node else {}),
    }


def _check(gw: Gateway, peer: Peer, body: s.GatewayJoin) -> s.Registration:
    reg = s.Registration.from_wire(body.registration)
    if reg.gateway != gw.name:
        raise InvalidArgument(f"this registration is for the gateway {reg.gateway!r}, not {gw.name!r}")
    check_public_key(reg.public_key)
    if reg.public_key != peer.public_key:
        raise PermissionDenied(
            "a node joins with its own key: this registration names another key than the one you connected with"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", reg.signing_key):
        raise InvalidArgument("the signing key is 64 hex characters")
    if not verify_signature(reg.signing_key, registration_message(reg.to_wire()), body.signature):
        raise PermissionDenied("the registration's signature does not verify with its signing key")
    skew = abs(time.time() - reg.timestamp)
    if skew > gw.config.max_skew_s:
        raise PermissionDenied(
            f"this registration was signed {skew:.0f} s from now (at most {gw.config.max_skew_s:.0f}): "
            "a stale or replayed registration; sign a fresh one (check the node's clock)"
        )
    if not reg.addresses or not all(ADDRESS.match(a) for a in reg.addresses):
        raise InvalidArgument("a node's addresses are 1 to 8 tcp://host:port addresses others can reach")
    if not 16 <= len(reg.nonce) <= 100:
        raise InvalidArgument("the nonce is 16 to 100 characters")
    return reg


def join(gw: Gateway, peer: Peer, body: s.GatewayJoin) -> dict[str, Any]:
    try:
        reg = _check(gw, peer, body)
    except SyftError as e:
        log.warning("refused a registration from %s…: %s", peer.public_key[:8], e.message)
        raise
    now = time.time()
    with gw.db.tx() as c:
        c.execute("DELETE FROM nonces WHERE at < ?", (now - 2 * gw.config.max_skew_s,))
        try:
            c.execute("INSERT INTO nonces(nonce, at) VALUES (?, ?)", (reg.nonce, now))
        except sqlite3.IntegrityError:
            raise PermissionDenied("this registration was used before (a replay): sign a fresh one") from None
        row = c.execute("SELECT * FROM nodes WHERE public_key=?", (reg.public_key,)).fetchone()
        if row is not None and row["status"] == "removed":
            raise PermissionDenied(
                f"the operator of {gw.name} removed this node: ask them to admit it again "
                f"(syft-kernel gateway admit {row['name']} --key {row['public_key'][:8]})"
            )
        if row is not None and row["name"] != reg.name:
            raise InvalidArgument(
                f"this node is a member as {row['name']!r}: leave first (owner.network.leave()) to join by another name"
            )
        if row is not None and row["signing_key"] != reg.signing_key:
            raise PermissionDenied("this node joined with another signing key: it must sign with the same one")
        record = (json.dumps(reg.addresses), json.dumps(reg.to_wire()), body.signature, now)
        if row is None:
            taken = c.execute("SELECT 1 FROM nodes WHERE name=? AND status='admitted'", (reg.name,)).fetchone()
            if taken:
                raise InvalidArgument(
                    f"the name {reg.name!r} is taken on {gw.name} by another node: "
                    "join under another name, or ask the gateway's operator"
                )
            (waiting,) = c.execute("SELECT COUNT(*) FROM nodes WHERE status='pending'").fetchone()
            if waiting >= gw.config.max_pending_nodes and not gw.config.auto_admit:
                raise QuotaExceeded(
                    f"{waiting} nodes wait for {gw.name}'s operator to admit them: try again later",
                    limit="pending nodes",
                )
            status = "admitted" if gw.config.auto_admit else "pending"
            c.execute(
                "INSERT INTO nodes(public_key, name, signing_key, addresses, status, registration, signature,"
                " joined_at, admitted_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reg.public_key,
                    reg.name,
                    reg.signing_key,
                    record[0],
                    status,
                    record[1],
                    record[2],
                    now,
                    now if status == "admitted" else None,
                    now,
                ),
            )
        else:
            status = row["status"]
            c.execute(
                "UPDATE nodes SET addresses=?, registration=?, signature=?, last_seen=? WHERE public_key=?",
                (*record, reg.public_key),
            )
    log.info(
        "node %s %s (%s, %s)",
        reg.name,
        "joined" if row is None else "registered again",
        status,
        ", ".join(reg.addresses),
    )
    return {"gateway": gw.name, "name": reg.name, "status": status}


def leave(gw: Gateway, peer: Peer, body: s.GatewayLeave) -> dict[str, Any]:
    node = member(peer, admitted=False)
    gw.db.remove_node(str(node["name"]), f"{node['name']} left the network", public_key=peer.public_key)
    log.info("node %s left", node["name"])
    return {"left": node["name"]}


def heartbeat(gw: Gateway, peer: Peer, body: s.GatewayHeartbeat) -> dict[str, Any]:
    if peer.node is None:
        raise ProtocolError("this node is not a member (any more): join again")
    member(peer, admitted=False)  # (a removed node is told so)
    name = peer.node["name"]
    with gw.db.tx() as c:
        c.execute("UPDATE nodes SET last_seen=? WHERE public_key=?", (time.time(), peer.public_key))
    return {
        "status": peer.node["status"],
        "datasets": gw.db.listing_count(name),
        "accounts": len(gw.db.accounts(name, "forwarding")),
    }


def nodes(gw: Gateway, peer: Peer, body: s.GatewayNodes) -> dict[str, Any]:
    """The admitted members, each with its addresses, key and whether it answers heartbeats."""
    now = time.time()
    out = []
    for n in gw.db.nodes(admitted_only=True):
        out.append(
            {
                "name": n["name"],
                "addresses": n["addresses"],
                "node_public_key": n["public_key"],
                "signing_key": n["signing_key"],
                "online": gw.online(n, now),
                "last_seen": n["last_seen"],
                "joined_at": n["joined_at"],
                "datasets": n["datasets"],
            }
        )
    return {"gateway": gw.name, "nodes": out}
