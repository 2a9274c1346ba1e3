"""The gateway's SQLite database (WAL): member nodes, their listings (with an FTS5 index and a
table of tags for exact matches), used registration nonces and account requests.

Every change is one transaction, so a gateway killed at any moment restarts consistent. The
operator's command line (``syft-kernel gateway admit``) writes to it while the gateway serves.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgpack

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    public_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    addresses TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'admitted', 'removed')),
    registration TEXT NOT NULL,
    signature TEXT NOT NULL,
    joined_at REAL NOT NULL,
    admitted_at REAL,
    last_seen REAL NOT NULL
);
-- a name is one admitted node's; several may claim it while pending (the operator admits one)
CREATE UNIQUE INDEX IF NOT EXISTS nodes_admitted_name ON nodes(name) WHERE status='admitted';
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS listings (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    assets TEXT NOT NULL,
    has_mock INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    hit BLOB NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (node, name)
);
CREATE TABLE IF NOT EXISTS listing_tags (
    listing INTEGER NOT NULL REFERENCES listings(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (tag, listing)
);
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(name, description, tags, assets, tokenize='unicode61');
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signing_key TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('forwarding', 'filed', 'approved', 'denied')),
    comment TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_by_node ON accounts(node, status);
CREATE INDEX IF NOT EXISTS accounts_by_key ON accounts(public_key, status);
"""
OPEN = ("forwarding", "filed")
# the FTS5 columns' weights in the ranking: a hit in the name counts most, then tags, description, assets
RANK = "bm25(listings_fts, 10.0, 2.0, 5.0, 1.0)"
MAX_TERMS = 16


def tag_key(tag: str) -> str:
    """Tags match exactly, whatever their case and with or without a leading '#'."""
    return tag.strip().lstrip("#").lower()


def match_expression(query: str) -> str | None:
    """An FTS5 query with every word of ``query`` (as a prefix): the user's text never reaches
    FTS5's query syntax, only its words, each quoted."""
    words = list(dict.fromkeys(w[:64] for w in re.findall(r"\w+", query.lower())))[:MAX_TERMS]
    return " AND ".join(f'"{w}"*' if len(w) >= 3 else f'"{w}"' for w in words) or None


class GatewayDB(SQLiteStore):
    """The gateway's tables (``core.sqlite``: one connection per thread, transactions via ``tx()``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    # ---- nodes (a row per key: one admitted node per name, any number of pending claims)
    def node(self, name: str) -> dict[str, Any] | None:
        """The admitted node of that name."""
        row = self.conn.execute("SELECT * FROM nodes WHERE name=? AND status='admitted'", (name,)).fetchone()
        return _node(row) if row else None

    def claims(self, name: str) -> list[dict[str, Any]]:
        """Every row with that name: the admitted node, pending claims, removed ones."""
        return [_node(r) for r in self.conn.execute("SELECT * FROM nodes WHERE name=? ORDER BY joined_at", (name,))]

    def node_by_key(self, public_key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM nodes WHERE public_key=?", (public_key,)).fetchone()
        return _node(row) if row else None

    def nodes(self, admitted_only: bool = False) -> list[dict[str, Any]]:
        sql = (
            "SELECT n.*, (SELECT COUNT(*) FROM listings l WHERE l.node=n.name AND n.status='admitted') AS datasets,"
            " (SELECT COUNT(*) FROM accounts a WHERE a.node=n.name AND n.status='admitted'"
            " AND a.status IN ('forwarding', 'filed')) AS open_accounts FROM nodes n"
        )
        if admitted_only:
            sql += " WHERE n.status='admitted'"
        return [_node(r) for r in self.conn.execute(sql + " ORDER BY n.name, n.joined_at")]

    def admit(self, name: str, key_prefix: str = "") -> dict[str, Any] | None:
        """Admit the claim to ``name`` whose key starts with ``key_prefix`` (needed when several
        nodes claim it); the other pending claims are dropped. None if it was admitted already."""
        with self.tx() as c:
            rows = [_node(r) for r in c.execute("SELECT * FROM nodes WHERE name=?", (name,))]
            if any(r["status"] == "admitted" for r in rows):
                return None
            waiting = [r for r in rows if r["status"] != "admitted" and r["public_key"].startswith(key_prefix)]
            if not waiting:
                raise InvalidArgument(
                    f"no node {name!r} asked to join" + (f" with a key {key_prefix}…" if key_prefix else "")
                )
            if len(waiting) > 1:
                keys = ", ".join(r["public_key"][:8] + "…" for r in waiting)
                raise InvalidArgument(
                    f"{len(waiting)} nodes ask to join as {name!r} (keys {keys}): check with the hospital which key "
                    f"is theirs and admit it with --key PREFIX"
                )
            (chosen,) = waiting
            c.execute(
                "UPDATE nodes SET status='admitted', admitted_at=? WHERE public_key=?",
                (time.time(), chosen["public_key"]),
            )
            c.execute("DELETE FROM nodes WHERE name=? AND status='pending'", (name,))
            return chosen

    def remove_node(self, name: str, why: str, public_key: str | None = None, ban: bool = False) -> bool:
        """A node leaves (its row goes) or the operator removes it (``ban``: it stays, removed, so
        it cannot join again unless admitted again); its listings go and its open account
        requests are denied with ``why``."""
        with self.tx() as c:
            if public_key is None:
                row = c.execute("SELECT public_key FROM nodes WHERE name=? AND status='admitted'", (name,)).fetchone()
                keys = (
                    [row["public_key"]]
                    if row
                    else [
                        r["public_key"]
                        for r in c.execute("SELECT public_key FROM nodes WHERE name=? AND status='pending'", (name,))
                    ]
                )
            else:
                keys = [public_key]
            if not keys:
                return False
            admitted = c.execute(
                f"SELECT 1 FROM nodes WHERE status='admitted' AND public_key IN ({','.join('?' * len(keys))})", keys
            ).fetchone()
            if admitted:
                ids = [r["id"] for r in c.execute("SELECT id FROM listings WHERE node=?", (name,))]
                for i in ids:
                    self.delete_listing(c, i)
                c.execute(
                    "UPDATE accounts SET status='denied', comment=?, updated_at=? WHERE node=? AND status IN (?, ?)",
                    (why, time.time(), name, *OPEN),
                )
            for k in keys:
                if ban:
                    c.execute("UPDATE nodes SET status='removed' WHERE public_key=?", (k,))
                else:
                    c.execute("DELETE FROM nodes WHERE public_key=?", (k,))
            return True

    # ---- listings
    def put_listing(self, c: sqlite3.Connection, node: str, d: dict[str, Any]) -> None:
        """Insert or replace one listing, its tags and its text index (inside ``c``'s transaction)."""
        now = time.time()
        old = c.execute("SELECT id FROM listings WHERE node=? AND name=?", (node, d["name"])).fetchone()
        if old is not None:
            self.delete_listing(c, old["id"])
        cur = c.execute(
            "INSERT INTO listings(node, name, description, tags, assets, has_mock, size, hit, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                node,
                d["name"],
                d["description"],
                json.dumps(d["tags"]),
                json.dumps(d["assets"]),
                d["has_mock"],
                len(d["description"]) + len(json.dumps(d["assets"])) + len(json.dumps(d["tags"])),
                msgpack.packb({"node": node, **d, "updated_at": now}),  # a hit, ready to send
                now,
            ),
        )
        lid = cur.lastrowid
        c.executemany(
            "INSERT OR IGNORE INTO listing_tags(listing, tag) VALUES (?, ?)", [(lid, tag_key(t)) for t in d["tags"]]
        )
        words = " ".join(
            [a["name"] + " " + " ".join(a.get("columns", [])) for a in d["assets"]]  # assets and their columns
        )
        c.execute(
            "INSERT INTO listings_fts(rowid, name, description, tags, assets) VALUES (?, ?, ?, ?, ?)",
            (
                lid,
                d["name"].replace("-", " ").replace("_", " ").replace(".", " "),
                d["description"],
                " ".join(d["tags"]),
                words,
            ),
        )

    def delete_listing(self, c: sqlite3.Connection, listing_id: int) -> None:
        c.execute("DELETE FROM listings_fts WHERE rowid=?", (listing_id,))
        c.execute("DELETE FROM listings WHERE id=?", (listing_id,))

    def listing_count(self, node: str) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM listings WHERE node=?", (node,)).fetchone()[0])

    def search(
        self,
        query: str,
        tags: list[str],
        node: str | None,
        name: str | None,
        limit: int,
        budget_s: float = 0.25,
        max_bytes: int = 1 << 20,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Listings of admitted nodes that have every word of ``query`` (ranked by BM25) and
        every tag; all of them, by node and name, for an empty query. At most ``max_bytes`` of
        hits (the flag says whether more were left out); a search that SQLite cannot finish in
        ``budget_s`` is refused as too broad."""
        deadline = time.monotonic() + budget_s
        self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            return self._search(query, tags, node, name, limit, max_bytes)
        except sqlite3.OperationalError as e:
            if "interrupted" not in str(e):
                raise
            raise InvalidArgument(
                "this search is too broad for the gateway: add words (of 3 letters or more) or tags"
            ) from None
        finally:
            self.conn.set_progress_handler(None, 0)

    def _search(
        self, query: str, tags: list[str], node: str | None, name: str | None, limit: int, max_bytes: int
    ) -> tuple[list[dict[str, Any]], bool]:
        match = match_expression(query)
        where, args = ["n.status='admitted'"], []
        for t in tags:
            where.append("l.id IN (SELECT listing FROM listing_tags WHERE tag=?)")
            args.append(tag_key(t))
        if node is not None:
            where.append("l.node=?")
            args.append(node)
        if name is not None:
            where.append("l.name=?")
            args.append(name)
        cols = "l.hit, l.size, n.last_seen"
        if match is None:
            sql = (
                f"SELECT {cols} FROM listings l JOIN nodes n ON n.name=l.node AND n.status='admitted'"
                f" WHERE {' AND '.join(where)}"
            )
            sql += " ORDER BY l.node, l.name LIMIT ?"
            rows = self.conn.execute(sql, (*args, limit))
        else:
            sql = (
                f"SELECT {cols} FROM listings_fts JOIN listings l ON l.id=listings_fts.rowid"
                f" JOIN nodes n ON n.name=l.node AND n.status='admitted' WHERE listings_fts MATCH ? AND {' AND '.join(where)}"
                f" ORDER BY {RANK}, l.node, l.name LIMIT ?"
            )
            rows = self.conn.execute(sql, (match, *args, limit))
        out, used = [], 0
        for r in rows:
            used += r["size"]
            if out and used > max_bytes:
                return out, True
            hit = msgpack.unpackb(r["hit"])
            hit["last_seen"] = r["last_seen"]
            out.append(hit)
        return out, False

    # ---- account requests
    def account(self, account_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM accounts WHERE id=?", (account_id,)).fetchone()
        return dict(row) if row else None

    def accounts(self, node: str, status: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM accounts WHERE node=? AND status=? ORDER BY created_at LIMIT 1000", (node, status)
        )
        return [dict(r) for r in rows]


def _node(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["addresses"] = json.loads(d["addresses"])
    d["registration"] = json.loads(d["registration"])
    return d
