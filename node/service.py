"""The data node's request handlers: one function per message type, each with the role it needs.

``DataNode.handle`` takes an authenticated user's message (already unframed) and returns the
reply body and buffers, or raises a ``SyftError`` that becomes an error reply. It never raises
anything else to the server loop: a bug in one handler is a ``SyftError`` for that message only.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from syft_kernel.core import codec
from syft_kernel.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    SyftError,
    Unauthorized,
)
from syft_kernel.core.executor import (
    NO_TWIN,
    Failed,
    RunLimits,
    Value,
    describe,
    freeze,
    run_plan,
    type_key,
)
from syft_kernel.core.keys import check_public_key
from syft_kernel.core.mock import make_mock
from syft_kernel.core.names import check_name
from syft_kernel.core.plan import bind_inputs

from . import storage
from .db import Database
from .grants import plan_grant, within_approval
from .limits import Limits
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


Handler = Callable[["DataNode", User, Any, Sequence[Any]], tuple[Any, list[Any]]]
HANDLERS: dict[str, tuple[str | None, Handler]] = {}


def handler(msg_type: str, role: str | None = None) -> Callable[[Handler], Handler]:
    """Register a handler; ``role="owner"`` restricts it to data owners."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[msg_type] = (role, fn)
        return fn

    return deco


def _body_dict(body: Any, *required: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError("message body must be a map")
    missing = [k for k in required if k not in body]
    if missing:
        raise ProtocolError(f"message body lacks {', '.join(missing)}")
    return body


_REQUIRED: Any = object()
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "a map", bytes: "bytes", type(None): "null"}


def _kind_name(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def field(b: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED,
          max_len: int | None = None, what: str | None = None) -> Any:
    """``b[key]`` if it is of ``kind`` (``float`` takes integers too; numbers never take booleans),
    else a ``ProtocolError`` saying what was expected. With a ``default``, a missing or null field
    is that default. ``max_len`` bounds strings and lists."""
    value = b.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    expected = what or " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
    if value is None:
        if default is not _REQUIRED:
            return default
        raise ProtocolError(f"{key} is {expected}, not null" if key in b else f"message body lacks {key}")
    ok = type(value) in kinds or (float in kinds and type(value) is int)
    if not ok:
        raise ProtocolError(f"{key} must be {expected}, not {_kind_name(value)} {codec.short_repr(value)}")
    if max_len is not None and isinstance(value, (str, list)) and len(value) > max_len:
        raise InvalidArgument(f"{key} is at most {max_len} {'characters' if isinstance(value, str) else 'items'} long")
    return value


def list_field(b: dict[str, Any], key: str, item: type | tuple[type, ...], default: Any = _REQUIRED,
               max_len: int = 100_000, what: str | None = None) -> Any:
    """A list field whose items are all of ``item`` (see ``field``)."""
    value = field(b, key, list, default, max_len=max_len, what=what)
    if value is default and default is not _REQUIRED:
        return value
    items = item if isinstance(item, tuple) else (item,)
    for x in value:
        if not (type(x) in items or (float in items and type(x) is int)):
            expected = what or "a list of " + " or ".join(_KIND_NAMES.get(k, k.__name__) for k in items)
            raise ProtocolError(f"{key} must be {expected}; it holds {_kind_name(x)} {codec.short_repr(x)}")
    return value


class DataNode:
    """The node's state (database, asset files, object store) and its message handlers."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.db = Database(self.folder / "node.db")
        self.assets_dir = self.folder / "assets"
        self.assets_dir.mkdir(exist_ok=True)
        self.name = self.db.get_meta("name") or self.folder.name
        removed = storage.remove_unreferenced(self.assets_dir, self.db.asset_paths())
        if removed:
            log.info("removed %d leftover asset file(s) from an interrupted upload", removed)
        from .ledger import Ledger

        self.ledger = Ledger(self.db)
        self.objects_dir = self.folder / "objects"
        self.objects_dir.mkdir(exist_ok=True)
        from .nodedir import make_private

        make_private(self.folder)
        config_file = self.folder / "node.json"
        self.limits = Limits.from_config(json.loads(config_file.read_text()) if config_file.exists() else {})
        self.store = ObjectStore(self._load_asset, self._load_persisted)
        self.store.max_bytes = self.limits.quota_mb * 2**20
        self.store.max_objects = self.limits.max_objects
        self.run_limits = RunLimits(self.limits.plan_timeout_s, self.limits.max_columns, self.limits.quota_mb * 2**20)
        self.events: queue.SimpleQueue[tuple[str | None, dict[str, Any]]] = queue.SimpleQueue()
        self.on_event: Callable[[], None] = lambda: None  # the server wakes its loop to send events
        self.memory_low = False  # set by the server when the process nears its address-space limit
        self._jobs: Any = None
        if self.db.requests(kind="code", limit=1):  # code requests exist: keep a sandbox ready for their runs
            self.job_runner().prestart()
        self._recover_runs()
        self._users_lock = threading.Lock()
        self._users: dict[str, User] = {}
        self.reload_users()
        self.counters: Counter[str] = Counter()
        self.started_at = time.time()

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

    # ---- dispatch
    def handle(self, user: User, msg_type: str, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
        entry = HANDLERS.get(msg_type)
        if entry is None:
            raise ProtocolError(f"unknown message type {msg_type!r}; this node knows {', '.join(sorted(HANDLERS))}")
        role, fn = entry
        if role == "owner" and not user.is_owner:
            raise Unauthorized(f"{msg_type} is for data owners; {user.name} is a {user.role}")
        self.counters[f"{user.name}:{msg_type}"] += 1
        self.counters["messages"] += 1
        return fn(self, user, body, buffers)

    # ---- assets
    def _load_asset(self, dataset: str, asset: str) -> Value:
        row = self.db.asset(dataset, asset)
        if row is None:
            raise NotFound(f"dataset {dataset!r} has no asset {asset!r}")
        value = freeze(storage.read_asset(self.assets_dir, row["kind"], row["path"],
                                          series=row["meta"].get("series", False)))
        # its twin is its mock: every op on it runs on the mock too, and only that is described
        mock = freeze(storage.read_asset(self.assets_dir, row["kind"], row["mock_path"],
                                         series=row["meta"].get("series", False)))
        shape = tuple(getattr(value, "shape", ()))
        key = f"{dataset}/{asset}"
        return Value(value, frozenset({key}), tuple(int(s) for s in shape), twin=mock, stable=key,
                     rows_bound=int(shape[0]) if shape else None)

    def _read_mock(self, dataset: str, asset: str) -> Any:
        row = self.db.asset(dataset, asset)
        if row is None:
            raise NotFound(f"dataset {dataset!r} has no asset {asset!r}")
        return storage.read_asset(self.assets_dir, row["kind"], row["mock_path"], series=row["meta"].get("series", False))

    def _load_persisted(self, obj_id: str) -> StoredObject | None:
        row = self.db.object(obj_id)
        if row is None:
            return None
        from .objfile import read_value

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
        return StoredObject(obj_id, Value(value, frozenset(json.loads(row["lineage"])),
                                          tuple(shape) if shape is not None else None, twin=twin,
                                          stable=facts.get("stable"), labels_public=bool(facts.get("labels", True)),
                                          rows_bound=facts.get("rows")),
                            row["owner"])

    def _recover_runs(self) -> None:
        """Code runs the node was doing when it died end as failures, never silently lost."""
        with self.db.tx() as c:
            n = c.execute("UPDATE requests SET run_status='failed', run_error=? WHERE run_status IN ('queued', 'running')",
                          ("the node stopped during the run; ask the owner to approve a new submission",)).rowcount
        if n:
            log.warning("marked %d interrupted code run(s) as failed", n)

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
        from .jobs import JobRunner

        if self._jobs is None:
            self._jobs = JobRunner(self.folder, lambda rid, outcome: req_mod.job_finished(self, rid, outcome))
        return self._jobs

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


# ---------------------------------------------------------------- handlers


@handler("hello")
def _hello(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    return {"node": node.name, "user": user.name, "role": user.role, "protocol": codec.PROTOCOL_VERSION}, []


@handler("node.stats")
def _stats(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    prefix = f"{user.name}:"
    mine = {k[len(prefix):]: v for k, v in node.counters.items() if k.startswith(prefix)}
    out: dict[str, Any] = {"node": node.name, "uptime": time.time() - node.started_at, "mine": mine}
    if user.is_owner:
        out.update(messages=node.counters["messages"], objects=len(node.store), counters=dict(node.counters))
    return out, []


@handler("users.add", role="owner")
def _users_add(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "name", "role", "public_key")
    name = check_name(b["name"], "user")
    if field(b, "role", str) not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {codec.short_repr(b['role'])}")
    key = check_public_key(field(b, "public_key", str, max_len=1000))
    existing = {u["name"]: u for u in node.db.users()}
    if name in existing:
        raise InvalidArgument(f"user {name!r} exists already: remove them first to change their key or role")
    if any(u["public_key"] == key for u in existing.values()):
        raise InvalidArgument("that public key belongs to another user: every user has their own keypair")
    signing = b.get("signing_key")
    if signing is not None and (not isinstance(signing, str) or len(signing) != 64):
        raise InvalidArgument("a signing key is 64 hex characters (the signing_key in NAME.pub)")
    if b["role"] == "owner" and not signing:
        raise InvalidArgument("an owner needs a signing key to approve requests: pass their NAME.pub file")
    node.db.add_user(name, key, b["role"], signing)
    node.reload_users()
    node.db.audit(user.name, "users.add", name, role=b["role"])
    log.info("%s added user %s (%s)", user.name, name, b["role"])
    return {"name": name, "role": b["role"]}, []


@handler("users.remove", role="owner")
def _users_remove(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "name")
    check_name(b["name"], "user")
    if b["name"] == user.name:
        raise InvalidArgument("you cannot remove yourself: another owner must do it")
    if not node.db.remove_user(str(b["name"])):
        raise NotFound(f"no user {b['name']!r}")
    node.reload_users()
    node.db.audit(user.name, "users.remove", str(b["name"]))
    log.info("%s removed user %s", user.name, b["name"])
    return {"removed": b["name"]}, []


@handler("users.list", role="owner")
def _users_list(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    return {"users": node.db.users()}, []


@handler("datasets.upload", role="owner")
def _datasets_upload(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "name", "assets")
    name = check_name(b["name"], "dataset")
    if node.db.dataset(name) is not None:
        raise InvalidArgument(f"dataset {name!r} exists already: pick another name or delete it first")
    tags = b.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise InvalidArgument("tags are a list of short strings")
    description = b.get("description") or ""
    if not isinstance(description, str) or len(description) > 10_000:
        raise InvalidArgument("the description is a string of at most 10,000 characters")
    if not isinstance(b["assets"], list) or not b["assets"]:
        raise InvalidArgument("a dataset has at least one asset")
    subject_column = field(b, "subject_column", str, None, max_len=1000)
    owners = b.get("owners") or [user.name]
    known_owners = {u["name"] for u in node.db.users() if u["role"] == "owner"}
    if not isinstance(owners, list) or not all(isinstance(o, str) and o in known_owners for o in owners):
        raise InvalidArgument(f"owners are users with the owner role on this node: {', '.join(sorted(known_owners))}")
    owners = sorted(set(owners))
    from .governance import check_policy

    policy = check_policy(b.get("policy") or {"kind": "single"}, owners)
    bounds = b.get("bounds") or {}
    if not isinstance(bounds, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[0] < v[1]
            for v in bounds.values()):
        raise InvalidArgument("bounds map column names to public (lower, upper) pairs, lower < upper")
    subject_limit = b.get("subject_limit") or 0.0
    if not isinstance(subject_limit, (int, float)) or subject_limit < 0 or subject_limit != subject_limit:
        raise InvalidArgument("subject_limit is a non-negative privacy loss per data subject (0: no limit)")
    if subject_limit and not subject_column:
        raise InvalidArgument("a per-subject limit needs subject_column to tell the subjects apart")
    max_rows = b.get("max_rows_per_subject") or 1
    if not isinstance(max_rows, int) or not 1 <= max_rows <= 10_000:
        raise InvalidArgument("max_rows_per_subject is a whole number from 1 to 10000")
    dec = codec.Decoder(buffers)
    written: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        for a in b["assets"]:
            a = _body_dict(a, "name", "value")
            aname = check_name(a["name"], "asset")
            if any(r["name"] == aname for r in rows):
                raise InvalidArgument(f"asset {aname!r} appears twice")
            try:  # odd values (types parquet or the mock maker cannot handle) are the uploader's to fix
                value = dec.decode(a["value"])
                kind = storage.kind_of(value)
                mock = dec.decode(a["mock"]) if a.get("mock") is not None else make_mock(value, bounds=bounds)
                if storage.kind_of(mock) != kind:
                    raise InvalidArgument(f"the mock of {aname!r} must be the same kind of value as the asset")
                _check_mock_schema(aname, value, mock)
                if subject_column is not None and type_key(value) == "DataFrame" and subject_column not in value.columns:
                    raise InvalidArgument(f"subject_column {subject_column!r} is not a column of {aname!r}")
                _, path = storage.write_asset(node.assets_dir, value)
                written.append(path)
                _, mock_path = storage.write_asset(node.assets_dir, mock)
                written.append(mock_path)
                meta = describe(Value(value), reveal=True)
                meta.pop("private", None)
                meta["series"] = type_key(value) == "Series"
                rows.append({"name": aname, "kind": kind, "path": path, "mock_path": mock_path, "meta": meta})
            except SyftError:
                raise
            except MemoryError:
                raise InvalidArgument(f"asset {aname!r} is too big to store on this node") from None
            except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
                    NotImplementedError, pa.ArrowException) as e:
                raise InvalidArgument(f"asset {aname!r} cannot be stored: {type(e).__name__}: "
                                      f"{codec.short_repr(str(e))}; convert it to plain columns first") from None
        node.db.add_dataset(name, description, tags, subject_column, user.name, rows, owners, policy,
                            {str(k): list(v) for k, v in bounds.items()}, max_rows, float(subject_limit))
    except BaseException:
        for p in written:
            (node.assets_dir / p).unlink(missing_ok=True)
        raise
    node.db.audit(user.name, "datasets.upload", name, assets=[r["name"] for r in rows])
    log.info("%s uploaded dataset %s (%s)", user.name, name, ", ".join(r["name"] for r in rows))
    return node.db.dataset(name), []


def _check_mock_schema(name: str, value: Any, mock: Any) -> None:
    if type_key(value) == "DataFrame" and list(map(str, mock.columns)) != list(map(str, value.columns)):
        raise InvalidArgument(f"the mock of {name!r} must have the asset's columns {list(value.columns)}")
    if type_key(value) in ("ndarray", "Tensor") and tuple(mock.shape[1:]) != tuple(value.shape[1:]):
        raise InvalidArgument(f"the mock of {name!r} must have the asset's trailing shape {tuple(value.shape[1:])}")


@handler("datasets.delete", role="owner")
def _datasets_delete(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "name")
    name = check_name(b["name"], "dataset")
    assets, object_files = node.db.remove_dataset(name)
    if not assets:
        raise NotFound(f"no dataset {name!r}")
    node.store.forget_asset(name)  # and every value derived from it: they would answer for new data
    for a in assets:
        for p in (a["path"], a["mock_path"]):
            (node.assets_dir / p).unlink(missing_ok=True)
    for f in object_files:
        (node.objects_dir / f).unlink(missing_ok=True)
        (node.objects_dir / (f.removesuffix(".bin") + ".twin.bin")).unlink(missing_ok=True)
    node.db.audit(user.name, "datasets.delete", name)
    log.info("%s deleted dataset %s", user.name, name)
    return {"deleted": name}, []


@handler("datasets.list")
def _datasets_list(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = body if isinstance(body, dict) else {}
    query = field(b, "query", str, "", max_len=1000).lower()
    tags = [t.lower() for t in list_field(b, "tags", str, [], max_len=100, what="a list of tags (strings)")]
    out, all_tags = [], set()
    for name in node.db.dataset_names():
        d = node.db.dataset(name)
        if d is None:
            continue
        all_tags.update(d["tags"])
        dtags = [t.lower() for t in d["tags"]]
        if tags and not all(t in dtags for t in tags):
            continue
        text = " ".join([d["name"], d["description"], *d["tags"], *(a["name"] for a in d["assets"])]).lower()
        if query and not all(word in text for word in query.split()):
            continue
        out.append(d)
    offset, limit = b.get("offset", 0), b.get("limit")
    if type(offset) is not int or offset < 0 or not (limit is None or (type(limit) is int and limit >= 0)):
        raise InvalidArgument("offset and limit are non-negative integers (a page of the results)")
    page = out[offset:] if limit is None else out[offset:offset + limit]
    return {"datasets": page, "total": len(out), "tags": sorted(all_tags)}, []


@handler("datasets.get")
def _datasets_get(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "name")
    d = node.db.dataset(check_name(b["name"], "dataset"))
    if d is None:
        raise NotFound(f"no dataset {b['name']!r} on {node.name}: list them with client.datasets")
    return d, []


@handler("datasets.mock")
def _datasets_mock(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "dataset", "asset")
    mock = node._read_mock(check_name(b["dataset"], "dataset"), check_name(b["asset"], "asset"))
    tree, bufs = codec.encode_value(mock)
    return {"value": tree}, bufs


@handler("asset.pointer")
def _asset_pointer(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "dataset", "asset")
    obj_id = f"asset:{check_name(b['dataset'], 'dataset')}/{check_name(b['asset'], 'asset')}"
    value = node.store.get(obj_id, user.name, user.is_owner)
    return {"id": obj_id, "meta": describe(value, reveal=True)}, []


@handler("run")
def _run(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Run a plan; store the results the client keeps and return their pointers' metadata."""
    b = _body_dict(body, "ops")
    keep = b.get("keep")
    ops = b["ops"]
    if not isinstance(ops, list) or not ops:
        raise ProtocolError("a plan is a non-empty list of ops")
    if keep is None:
        keep = [len(ops) - 1] if isinstance(ops, list) else []
    if not isinstance(keep, list) or not all(type(i) is int and 0 <= i < len(ops) for i in keep):
        raise ProtocolError(f"keep is a list of indices of the plan's {len(ops)} ops")
    if len(keep) > 1 and len(set(keep)) != len(keep):
        raise ProtocolError("keep lists distinct op indices, at most one per op")
    input_ids = b.get("inputs") or []
    if not isinstance(input_ids, list) or not all(isinstance(i, str) for i in input_ids):
        raise ProtocolError("inputs is a list of object ids")
    resolve = node.resolver(user)
    inputs = [resolve(i) for i in input_ids]
    granted = plan_grant(node, user, b.get("plan"), ops, keep, input_ids, buffers)
    results = run_plan(ops, resolve, buffers, inputs, node.run_limits, keep)
    provenance_ops = bind_inputs(ops, input_ids)  # one copy, shared by every kept result
    out = []
    for i in keep:
        obj = node.store.put(results[i], user.name, provenance={"ops": provenance_ops, "index": i})
        failed = results[i].failed
        if failed is not None:  # only on the real data: the scientist is not told; the owner reads why
            node.db.audit(user.name, "op.failed", failed.op, error=failed.detail or failed.exception,
                          object=obj.id, op_index=i)
        reveal = user.is_owner
        if granted is not None and results[i].private:
            if within_approval(results[i].lineage, granted["datasets"]):
                from .requests import grant_reader

                grant_reader(node, obj, user.name, str(granted["id"]))
                reveal = True
            else:  # the approval was given for other data: this result stays private
                node.db.audit(user.name, "plan.outside_approval", str(granted["id"]), object=obj.id,
                              lineage=sorted(results[i].lineage))
                log.warning("%s ran approved plan %s, but result %s reads data outside the approval",
                            user.name, granted["id"], obj.id)
        out.append({"id": obj.id, "meta": describe(results[i], reveal=reveal)})
    log.debug("%s ran a plan of %d op(s)", user.name, len(ops))
    return {"results": out}, []


@handler("get")
def _get(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "id")
    obj_id = str(b["id"])
    value = node.store.get(obj_id, user.name, user.is_owner)
    if not node.may_read(user, obj_id, value):
        sources = ", ".join(sorted(value.lineage))
        node.db.audit(user.name, "get.denied", obj_id, lineage=sorted(value.lineage))
        log.warning("%s was refused get() of %s (private: %s)", user.name, obj_id, sources)
        asked = node.db.latest_request_for(obj_id, user.name)
        if asked is not None and asked["status"] == "denied":
            deciders = ", ".join(a["owner"] for a in asked["approvals"] if a["decision"] == "deny") or "the owners"
            why = asked.get("comment") or "no reason given"
            raise PermissionDenied(
                f"request {asked['id']} for this value was denied by {deciders}: {why}. The value stays "
                f"on {node.name}; change what you compute, or file a new request with a better reason",
                request_id=asked["id"], status="denied", comment=asked.get("comment") or "",
                lineage=sorted(value.lineage))
        if asked is not None and asked["status"] == "pending":
            raise PermissionDenied(
                f"request {asked['id']} for this value is still pending: the owners of {sources} have not "
                "decided yet; req.wait() returns when they do",
                request_id=asked["id"], status="pending", lineage=sorted(value.lineage))
        raise PermissionDenied(
            f"this value is derived from private data ({sources}) and stays on {node.name} until the "
            "data owner approves its release: ask with ptr.request(reason='…'), or use a "
            "differentially private query (ptr.dp…) where your budget allows",
            request_hint="ptr.request(reason='…')",
            lineage=sorted(value.lineage),
        )
    failed = value.failed
    if failed is not None:  # a reader may see it: what failed on the real data (the owner sees why)
        text = failed.public_text() + (f": {failed.detail}" if user.is_owner and failed.detail else "")
        node.db.audit(user.name, "get.failed", obj_id, lineage=sorted(value.lineage))
        raise RemoteError(text, op=failed.op, exception=failed.exception, failed=True)
    tree, bufs = codec.encode_value(value.value)
    if value.private:
        size = sum(memoryview(x).nbytes for x in bufs)
        action = "get" if user.is_owner else "release"
        node.db.audit(user.name, action, obj_id, lineage=sorted(value.lineage), bytes=size)
        log.info("%s got private object %s (%d bytes)", user.name, obj_id, size)
    return {"value": tree}, bufs


@handler("objects.describe")
def _describe(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "id")
    obj_id = field(b, "id", str, max_len=1000, what="an object id (a string)")
    value = node.store.get(obj_id, user.name, user.is_owner)
    return {"id": obj_id, "meta": describe(value, reveal=node.may_read(user, obj_id, value))}, []


@handler("del")
def _del(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "ids")
    ids = b["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProtocolError("ids is a list of object ids")
    return {"deleted": node.store.delete(ids, user.name, user.is_owner)}, []


@handler("budgets.set", role="owner")
def _budgets_set(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = _body_dict(body, "user", "dataset", "epsilon")
    who, dataset = check_name(b["user"], "user"), check_name(b["dataset"], "dataset")
    if node.db.dataset(dataset) is None:
        raise NotFound(f"no dataset {dataset!r}")
    if who not in {u["name"] for u in node.db.users()}:
        raise NotFound(f"no user {who!r}")
    eps, delta = field(b, "epsilon", float), field(b, "delta", float, 0.0)
    if not 0 <= eps < 1e6 or eps != eps:
        raise InvalidArgument("epsilon is a non-negative number")
    if not 0 <= delta < 1:
        raise InvalidArgument("delta is between 0 (inclusive) and 1 (exclusive)")
    node.ledger.set_budget(who, dataset, float(eps), float(delta))
    node.db.audit(user.name, "budgets.set", dataset, scientist=who, epsilon=eps, delta=delta)
    status = node.ledger.status(who, dataset)
    event = {"event": "budget.changed", "dataset": dataset, "user": who}
    node.notify(str(who), event)
    node.notify_owners(event)
    return {"budget": status}, []


@handler("budgets.get")
def _budgets_get(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = body if isinstance(body, dict) else {}
    asked = field(b, "user", str, None, max_len=1000)
    who = asked if user.is_owner and asked else user.name
    dataset = field(b, "dataset", str, None, max_len=1000) or None
    history = field(b, "history", bool, True)
    out: dict[str, Any] = {"user": who, "budgets": node.ledger.status(str(who), dataset)}
    if history:  # a summary view (the dashboard) asks without it
        out["history"] = node.ledger.history(str(who), dataset)
    if user.is_owner and dataset:
        d = node.db.dataset(str(dataset))
        if d and d.get("subject_limit"):
            out["spent_subjects"] = node.ledger.spent_subjects(str(dataset), float(d["subject_limit"]))
    return out, []


@handler("audit.list", role="owner")
def _audit_list(node: DataNode, user: User, body: Any, buffers: Sequence[Any]) -> tuple[Any, list[Any]]:
    b = body if isinstance(body, dict) else {}
    limit = b.get("limit", 1000)
    if type(limit) is not int or not 0 < limit <= 100_000:
        raise InvalidArgument("limit is an integer between 1 and 100000")
    filters = {k: b.get(k) for k in ("user", "action", "target") if isinstance(b.get(k), str)}
    since = b.get("since") if type(b.get("since")) in (int, float) else None
    return {"entries": node.db.audit_log(limit, since=since, **filters)}, []


__all__ = ["DataNode", "User", "HANDLERS", "SyftError", "check_name"]
