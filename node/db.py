"""The node's SQLite database (WAL): users, datasets, assets and the audit log.

Every change is one transaction, so a node killed at any moment restarts consistent.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from syft_kernel.core import public as declarations
from syft_kernel.core.sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    public_key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'data_scientist')),
    signing_key TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    subject_column TEXT,
    owners TEXT NOT NULL DEFAULT '[]',
    bounds TEXT NOT NULL DEFAULT '{}',
    max_rows_per_subject INTEGER NOT NULL DEFAULT 1,
    subject_limit REAL NOT NULL DEFAULT 0,
    policy TEXT NOT NULL DEFAULT '{"kind": "single"}',
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assets (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    mock_path TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (dataset, name)
);
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lineage TEXT NOT NULL,
    public_shape TEXT,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS readers (
    object_id TEXT NOT NULL,
    user TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (object_id, user)
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('object', 'code', 'plan', 'budget', 'account', 'training')),
    target TEXT NOT NULL,
    datasets TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    comment TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL DEFAULT '[]',
    source TEXT,
    fn_name TEXT,
    inputs TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    size INTEGER,
    limits TEXT NOT NULL DEFAULT '{}',
    run_status TEXT,
    run_error TEXT,
    result_id TEXT,
    created_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS requests_by_target ON requests(target, requester);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests(status, created_at);
CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT NOT NULL REFERENCES requests(id),
    owner TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
    comment TEXT NOT NULL DEFAULT '',
    nonce TEXT NOT NULL UNIQUE,
    signature TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (request_id, owner)
);
CREATE TABLE IF NOT EXISTS network_outbox (
    account TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS fl_calls (
    request_id TEXT NOT NULL REFERENCES requests(id),
    kind TEXT NOT NULL CHECK (kind IN ('fit', 'evaluate')),
    round INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 1,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (request_id, kind, round)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
"""


class Database(SQLiteStore):
    """The node's tables (``core.sqlite``: one connection per thread, transactions via ``tx()``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database made by an older version up to this schema (each step one transaction)."""
        (sql,) = self.conn.execute("SELECT sql FROM sqlite_master WHERE name='requests'").fetchone()
        if "'training'" not in sql:  # account (the network), training (FL) requests: a CHECK changes by a rebuild
            kinds = "kind IN ('object', 'code', 'plan', 'budget', 'account', 'training')"
            new = re.sub(r"kind IN \([^)]*\)", kinds, sql, count=1).replace("requests (", "requests_new (", 1)
            c = self.conn
            c.execute("PRAGMA foreign_keys=OFF")
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    c.execute(new)
                    c.execute("INSERT INTO requests_new SELECT * FROM requests")
                    c.execute("DROP TABLE requests")
                    c.execute("ALTER TABLE requests_new RENAME TO requests")
                    c.execute("CREATE INDEX IF NOT EXISTS requests_by_target ON requests(target, requester)")
                    c.execute("CREATE INDEX IF NOT EXISTS requests_by_status ON requests(status, created_at)")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            finally:
                c.execute("PRAGMA foreign_keys=ON")

    # ---- users
    def add_user(self, name: str, public_key: str, role: str, signing_key: str | None = None) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO users(name, public_key, role, signing_key, created_at) VALUES (?, ?, ?, ?, ?)",
                (name, public_key, role, signing_key, time.time()),
            )

    def remove_user(self, name: str) -> bool:
        """Remove a user and what was granted to them: their releases (``readers``) and their
        undecided requests go too, so whoever gets the name later inherits nothing."""
        with self.tx() as c:
            if c.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 0:
                return False
            c.execute("DELETE FROM readers WHERE user=?", (name,))
            c.execute(
                "UPDATE requests SET status='denied', comment=?, decided_at=? WHERE requester=? AND status='pending'",
                (f"{name} was removed from the node", time.time(), name),
            )
            return True

    def users(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT name, public_key, role, signing_key, created_at FROM users ORDER BY name")
        return [dict(r) for r in rows]

    # ---- datasets
    def add_dataset(
        self,
        name: str,
        description: str,
        tags: list[str],
        subject_column: str | None,
        created_by: str,
        assets: list[dict[str, Any]],
        owners: list[str] | None = None,
        policy: dict[str, Any] | None = None,
        bounds: dict[str, Any] | None = None,
        max_rows_per_subject: int = 1,
        subject_limit: float = 0.0,
    ) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO datasets(name, description, tags, subject_column, owners, policy, bounds,"
                " max_rows_per_subject, subject_limit, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    description,
                    json.dumps(tags),
                    subject_column,
                    json.dumps(owners or [created_by]),
                    json.dumps(policy or {"kind": "single"}),
                    json.dumps(bounds or {}),
                    max_rows_per_subject,
                    subject_limit,
                    created_by,
                    time.time(),
                ),
            )
            for a in assets:
                c.execute(
                    "INSERT INTO assets(dataset, name, kind, path, mock_path, meta) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, a["name"], a["kind"], a["path"], a["mock_path"], json.dumps(a["meta"])),
                )

    def remove_dataset(self, name: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Delete a dataset, every persisted object derived from it, and close the requests still
        open on it (a dataset uploaded again under the name must not answer for the old data);
        returns its assets and the files of the objects removed, in one transaction."""
        with self.tx() as c:
            assets = [dict(r) for r in c.execute("SELECT * FROM assets WHERE dataset=?", (name,))]
            if not assets:
                return [], []
            c.execute("DELETE FROM datasets WHERE name=?", (name,))
            gone = [
                (r["id"], r["path"])
                for r in c.execute("SELECT id, path, lineage FROM objects")
                if any(str(e).split("/", 1)[0] == name for e in json.loads(r["lineage"]))
            ]
            for obj_id, _ in gone:
                c.execute("DELETE FROM objects WHERE id=?", (obj_id,))
            for r in c.execute("SELECT id, datasets FROM requests WHERE status='pending'").fetchall():
                if any(str(e).split("/", 1)[0] == name for e in json.loads(r["datasets"])):
                    c.execute(
                        "UPDATE requests SET status='denied', comment=?, decided_at=? WHERE id=?",
                        (f"the dataset {name} was deleted", time.time(), r["id"]),
                    )
        return assets, [path for _, path in gone]

    def dataset(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["tags"] = json.loads(d["tags"])
        d["owners"] = json.loads(d["owners"])
        d["policy"] = json.loads(d["policy"])
        d["public"] = declarations.from_stored(json.loads(d["bounds"]))  # one stored notion: the declarations
        d["bounds"] = declarations.bounds_of(d["public"])  # their numeric ranges, the DP bounds
        d["assets"] = [
            {**json.loads(a["meta"]), "name": a["name"], "kind": a["kind"]}  # a Series keeps its own name in meta
            for a in self.conn.execute("SELECT * FROM assets WHERE dataset=? ORDER BY rowid", (name,))
        ]
        return d

    def dataset_names(self) -> list[str]:
        return [r["name"] for r in self.conn.execute("SELECT name FROM datasets ORDER BY created_at, name")]

    def asset(self, dataset: str, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM assets WHERE dataset=? AND name=?", (dataset, name)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["meta"] = json.loads(d["meta"])
        return d

    def asset_paths(self) -> set[str]:
        rows = self.conn.execute("SELECT path, mock_path FROM assets")
        return {p for r in rows for p in (r["path"], r["mock_path"])}

    # ---- audit
    def audit(self, user: str, action: str, target: str = "", **detail: Any) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO audit(at, user, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), user, action, target, json.dumps(detail, default=str)),
            )

    def audit_log(
        self,
        limit: int = 1000,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        for column, value in (("user", user), ("action", action), ("target", target)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        rows = self.conn.execute(
            f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit)
        )
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    # ---- persisted objects and who may read them
    def add_object(self, obj_id: str, owner: str, lineage: list[str], public_shape: Any, path: str, size: int) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO objects(id, owner, lineage, public_shape, path, size, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (obj_id, owner, json.dumps(lineage), json.dumps(public_shape), path, size, time.time()),
            )

    def object(self, obj_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM objects WHERE id=?", (obj_id,)).fetchone()
        return dict(row) if row else None

    def object_paths(self) -> set[str]:
        return {r["path"] for r in self.conn.execute("SELECT path FROM objects")}

    def readers(self, obj_id: str) -> set[str]:
        return {r["user"] for r in self.conn.execute("SELECT user FROM readers WHERE object_id=?", (obj_id,))}

    # ---- requests
    def request(self, request_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM requests WHERE id=?", (request_id,)).fetchone()
        return self._request_row(row) if row else None

    def open_request_for(self, target: str, requester: str) -> dict[str, Any] | None:
        """The newest pending or approved object request for ``target`` by ``requester``."""
        row = self.conn.execute(
            "SELECT * FROM requests WHERE target=? AND requester=? AND kind='object' AND status!='denied'"
            " ORDER BY created_at DESC LIMIT 1",
            (target, requester),
        ).fetchone()
        return self._request_row(row) if row else None

    def latest_request_for(self, target: str, requester: str) -> dict[str, Any] | None:
        """The newest object request for ``target`` by ``requester``, whatever its status."""
        row = self.conn.execute(
            "SELECT * FROM requests WHERE target=? AND requester=? AND kind='object' ORDER BY created_at DESC LIMIT 1",
            (target, requester),
        ).fetchone()
        return self._request_row(row) if row else None

    def requests(
        self, status: str | None = None, requester: str | None = None, kind: str | None = None, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        where, args = ["1=1"], []
        for column, value in (("status", status), ("requester", requester), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self.conn.execute(
            f"SELECT * FROM requests WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT ?", (*args, limit)
        )
        return [self._request_row(r) for r in rows]

    def _request_row(self, row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for key in ("datasets", "plan", "inputs", "limits"):
            d[key] = json.loads(d[key])
        d["approvals"] = [
            dict(a)
            for a in self.conn.execute(
                "SELECT owner, decision, comment, at, signature FROM approvals WHERE request_id=? ORDER BY at",
                (d["id"],),
            )
        ]
        return d
