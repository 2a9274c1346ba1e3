"""Listings: a member node publishes its datasets' public metadata; anyone searches it."""

from __future__ import annotations

import time
from typing import Any

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, QuotaExceeded
from syft_kernel.core.listing import check_listing
from syft_kernel.core.names import check_name

from ..state import Gateway, Peer
from . import member


def publish(gw: Gateway, peer: Peer, body: s.GatewayPublish) -> dict[str, Any]:
    """Upsert and remove listings (``full``: the upserts are all of the node's datasets; ``keep``:
    the names of all of them, the first of a publish in chunks), in one transaction: a bad
    listing changes nothing."""
    node = str(member(peer)["name"])
    listings = [check_listing(m) for m in body.upsert]
    names = [x["name"] for x in listings]
    if len(set(names)) != len(names):
        raise InvalidArgument("a dataset is listed twice in one publish")
    removed = [check_name(n, "dataset") for n in body.remove]
    keep_only = None if body.keep is None else {check_name(n, "dataset") for n in body.keep}
    with gw.db.tx() as c:
        if body.full or keep_only is not None:
            keep = set(names) | (keep_only or set())
            for r in c.execute("SELECT id, name FROM listings WHERE node=?", (node,)).fetchall():
                if r["name"] not in keep:
                    gw.db.delete_listing(c, r["id"])
        for n in removed:
            r = c.execute("SELECT id FROM listings WHERE node=? AND name=?", (node, n)).fetchone()
            if r is not None:
                gw.db.delete_listing(c, r["id"])
        for x in listings:
            gw.db.put_listing(c, node, x)
        (count, size) = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM listings WHERE node=?", (node,)
        ).fetchone()
        if size > gw.config.max_node_mb * 2**20:
            raise QuotaExceeded(
                f"a node lists at most {gw.config.max_node_mb} MB of metadata on {gw.name}: publish fewer "
                "or smaller listings",
                limit="listing bytes",
            )
        if count > gw.config.max_datasets_per_node:
            raise QuotaExceeded(
                f"a node lists at most {gw.config.max_datasets_per_node} datasets on {gw.name}", limit="datasets"
            )
        c.execute("UPDATE nodes SET last_seen=? WHERE public_key=?", (time.time(), peer.public_key))
    return {"datasets": count}


def search(gw: Gateway, peer: Peer, body: s.GatewaySearch) -> dict[str, Any]:
    """Ranked full-text search (SQLite FTS5, BM25) of the listings, with exact tags."""
    if len(body.query) > 1000:
        raise InvalidArgument("a search is a string of at most 1,000 characters")
    tags = body.tags
    if len(tags) > 32 or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise InvalidArgument("tags are a list of at most 32 strings of at most 64 characters")
    if not 1 <= body.limit <= 1000:
        raise InvalidArgument("limit is a whole number from 1 to 1000")
    hits, cut = gw.db.search(
        body.query,
        tags,
        body.node,
        body.name,
        body.limit,
        budget_s=gw.config.search_budget_s,
        max_bytes=gw.config.max_reply_kb * 1024,
    )
    now = time.time()
    offline_after = gw.config.offline_after_s
    for h in hits:
        h["online"] = now - h.pop("last_seen") <= offline_after
    return {"datasets": hits, **({"truncated": True} if cut else {})}
