"""The data node's state: its database, asset files, object store, ledger, users and events.

The handlers (``node/handlers/``, one module per concept) act on it; ``node/dispatch.py`` routes
each message to its handler.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_kernel.core.errors import (
    NotFound,
)
from syft_kernel.core.executor import (
    NO_TWIN,
    Failed,
    RunLimits,
    Value,
    freeze,
)

from . import storage
from .config import NodeConfig
from .db import Database
from .jobs import JobRunner
from .ledger import Ledger
from .nodedir import make_private
from .objfile import read_value
from .store import ObjectStore, StoredObject

log = logging.getLogger("syft_kernel.node")

ROLES = ("owner", "data_scientist")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    public_key: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


class DataNode:
    """The node's state (database, asset files, object store) and its message handlers."""

    def __init__(self, folder: str | Path, config: NodeConfig | None = None) -> None:
        self.folder = Path(folder)
        self.db = Database(self.folder / "node.db")
        self.assets_dir = self.folder / "assets"
        self.assets_dir.mkdir(exist_ok=True)
        self.name = self.db.get_meta("name") or self.folder.name
        removed = storage.remove_unreferenced(self.assets_dir, self.db.asset_paths())
        if removed:
            log.info("removed %d leftover asset file(s) from an interrupted upload", removed)
        self.ledger = Ledger(self.db)
        for dataset in self.db.dataset_names():  # default budgets reach every dataset, even after a crash
            self.ledger.apply_defaults(dataset)
        self.objects_dir = self.folder / "objects"
        self.objects_dir.mkdir(exist_ok=True)
        make_private(self.folder)
        self.limits = config if config is not None else NodeConfig.load(self.folder)
        self.store = ObjectStore(self._load_asset, self._load_persisted)
        self.store.max_bytes = self.limits.quota_mb * 2**20
        self.store.max_objects = self.limits.max_objects
        self.run_limits = RunLimits(self.limits.plan_timeout_s, self.limits.max_columns, self.limits.quota_mb * 2**20)
        self.events: queue.SimpleQueue[tuple[str | None, dict[str, Any]]] = queue.SimpleQueue()
        self.on_event: Callable[[], None] = lambda: None  # the server wakes its loop to send events
        self.memory_low = False  # set by the server when the process nears its address-space limit
        self._jobs: Any = None
        self._fl: Any = None
        self.fl_graphs: dict[str, Any] = {}  # each approved training's checked graph (handlers/fl.py)
        self._fl_lock = threading.Lock()
        if self.db.requests(kind="code", limit=1):  # code requests exist: keep a sandbox ready for their runs
            self.job_runner().prestart()
        self._recover_runs()
        self._users_lock = threading.Lock()
        self._users: dict[str, User] = {}
        self.reload_users()
        self.counters: Counter[str] = Counter()
        self.started_at = time.time()
        from .network import NetworkAgent

        self.network = NetworkAgent(self)  # started by the server once it knows its addresses

    # ---- users and keys (the ZAP handler asks ``key_allowed`` from its own thread)
    def reload_users(self) -> None:
        users = {u["public_key"]: User(u["name"], u["role"], u["public_key"]) for u in self.db.users()}
        with self._users_lock:
            self._users = users

    def key_allowed(self, public_key: str) -> bool:
        with self._users_lock:
            return public_key in self._users

    def user_for_key(self, public_key: str) -> User | None:
        with self._users_lock:
            return self._users.get(public_key)

    # ---- assets
    def _load_asset(self, dataset: str, asset: str) -> Value:
        row = self.db.asset(dataset, asset)
        if row is None:
            raise NotFound(f"dataset {dataset!r} has no asset {asset!r}")
        value = freeze(
            storage.read_asset(self.assets_dir, row["kind"], row["path"], series=row["meta"].get("series", False))
        )
        # its twin is its mock: every op on it runs on the mock too, and only that is described
        mock = freeze(
            storage.read_asset(self.assets_dir, row["kind"], row["mock_path"], series=row["meta"].get("series", False))
        )
        shape = tuple(getattr(value, "shape", ()))
        key = f"{dataset}/{asset}"
        return Value(
            value,
            frozenset({key}),
            tuple(int(s) for s in shape),
            twin=mock,
            stable=key,
            rows_bound=int(shape[0]) if shape else None,
        )

    def _read_mock(self, dataset: str, asset: str) -> Any:
        row = self.db.asset(dataset, asset)
        if row is None:
            raise NotFound(f"dataset {dataset!r} has no asset {asset!r}")
        return storage.read_asset(
            self.assets_dir, row["kind"], row["mock_path"], series=row["meta"].get("series", False)
        )

    def _load_persisted(self, obj_id: str) -> StoredObject | None:
        row = self.db.object(obj_id)
        if row is None:
            return None
        value = freeze(read_value(self.objects_dir / row["path"]))
        facts = json.loads(row["public_shape"]) if row["public_shape"] else None
        if not isinstance(facts, dict):  # older nodes stored the shape alone
            facts = {"shape": facts}
        twin_path = self.objects_dir / (row["path"].removesuffix(".bin") + ".twin.bin")
        twin = freeze(read_value(twin_path)) if twin_path.exists() else NO_TWIN
        failed = facts.get("failed")
        if isinstance(failed, dict):
            value = Failed(str(failed.get("op", "")), str(failed.get("exception", "")), str(failed.get("detail", "")))
        shape = facts.get("shape")
        return StoredObject(
            obj_id,
            Value(
                value,
                frozenset(json.loads(row["lineage"])),
                tuple(shape) if shape is not None else None,
                twin=twin,
                stable=facts.get("stable"),
                labels_public=bool(facts.get("labels", True)),
                rows_bound=facts.get("rows"),
            ),
            row["owner"],
        )

    def _recover_runs(self) -> None:
        """Code runs the node was doing when it died end as failures, never silently lost."""
        with self.db.tx() as c:
            n = c.execute(
                "UPDATE requests SET run_status='failed', run_error=? WHERE run_status IN ('queued', 'running')",
                ("the node stopped during the run; ask the owner to approve a new submission",),
            ).rowcount
            m = c.execute(
                "UPDATE fl_calls SET status='failed', error=? WHERE status='running'",
                ("the node stopped during this call; run it again",),
            ).rowcount
        if n:
            log.warning("marked %d interrupted code run(s) as failed", n)
        if m:
            log.warning("marked %d interrupted federated round(s) as failed", m)

    # ---- events pushed to connected clients (the server loop sends them)
    def notify(self, user: str, event: dict[str, Any]) -> None:
        self.events.put((user, event))
        self.on_event()

    def notify_owners(self, event: dict[str, Any]) -> None:
        self.events.put((None, event))
        self.on_event()

    # ---- code runs
    def job_runner(self) -> Any:
        """The code runs' JobRunner (sandboxes started from one long-lived thread), made once."""
        from . import requests as req_mod

        if self._jobs is None:
            self._jobs = JobRunner(self.folder, lambda rid, outcome: req_mod.job_finished(self, rid, outcome))
        return self._jobs

    def fl_runner(self) -> Any:
        """The federated jobs' trainers (``node/fl.py``), made on first use."""
        with self._fl_lock:
            if self._fl is None:
                from .fl import FLRunner

                self._fl = FLRunner(self)
            return self._fl

    def start_job(self, request_id: str) -> None:
        self.job_runner()
        row = self.db.request(request_id)
        assert row is not None
        inputs = {name: self.store.get(oid, row["requester"], is_owner=True) for name, oid in row["inputs"].items()}
        with self.db.tx() as c:
            c.execute("UPDATE requests SET run_status='running' WHERE id=?", (request_id,))
        self._jobs.start(request_id, row["source"], row["fn_name"], inputs, row["limits"])

    def resolver(self, user: User) -> Callable[[str], Value]:
        return lambda obj_id: self.store.get(obj_id, user.name, user.is_owner)

    def may_read(self, user: User, obj_id: str, value: Value) -> bool:
        if user.is_owner or not value.private:
            return True
        return user.name in self.db.readers(obj_id)


__all__ = ["DataNode", "User", "ROLES"]
