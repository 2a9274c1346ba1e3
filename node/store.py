"""The object store: id → value, its owner, its lineage and who may read it.

Assets are addressed as ``asset:<dataset>/<asset>`` and loaded from their files on first use;
results of operations get random ids and belong to the user whose plan made them.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syft_kernel.core.errors import NotFound, QuotaExceeded
from syft_kernel.core.executor import Value, charge, compact, nbytes

MAX_OBJECTS_PER_USER = 100_000
MAX_BYTES_PER_USER = 4 * 1024**3  # node.json: quota_mb
MAX_PROVENANCE = 500_000


@dataclass
class StoredObject:
    id: str
    value: Value
    owner: str
    created_at: float = field(default_factory=time.time)
    provenance: dict[str, Any] | None = None  # {"ops": plan, "index": i}: how it was made
    size: int = 0  # bytes counted against its owner's quota


class ObjectStore:
    """Thread-safe map of stored objects plus a cache of loaded assets."""

    def __init__(
        self,
        load_asset: Callable[[str, str], Value],
        load_persisted: Callable[[str], StoredObject | None] = lambda obj_id: None,
    ) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._assets: dict[str, Value] = {}
        self._load_asset = load_asset
        self._load_persisted = load_persisted
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self.max_objects = MAX_OBJECTS_PER_USER
        self.max_bytes = MAX_BYTES_PER_USER
        # how each object was made, kept after the object is freed so a request can show its plan
        self._provenance: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, value: Value, owner: str, provenance: dict[str, Any] | None = None) -> StoredObject:
        """Store a result for ``owner``, within their quota of objects and bytes."""
        compacted = compact(value.value)
        if compacted is not value.value:
            value = dataclasses.replace(value, value=compacted)
        size = charge(value)  # public: a private value counts by its public size, never its real one
        with self._lock:
            if self._counts.get(owner, 0) >= self.max_objects:
                raise QuotaExceeded(
                    f"you hold {self.max_objects} objects on this node: delete pointers you no "
                    "longer need (del ptr) before making more",
                    limit="objects",
                )
            held = self._bytes.get(owner, 0)
            if held + size > self.max_bytes:
                # no byte counts in the message: the sizes of private results with hidden shapes
                # are in them (a filtered frame's size is its private row count)
                raise QuotaExceeded(
                    f"this result would take your objects on this node past your {self.max_bytes / 2**20:,.0f} "
                    "MiB quota: delete pointers you no longer need (del ptr), or ask the owner for a "
                    "larger quota",
                    limit="bytes",
                )
            obj = StoredObject("o" + secrets.token_hex(12), value, owner, provenance=provenance)
            obj.size = size
            self._objects[obj.id] = obj
            if provenance is not None:
                self._provenance[obj.id] = provenance
                if len(self._provenance) > MAX_PROVENANCE:
                    self._provenance.popitem(last=False)
            self._counts[owner] = self._counts.get(owner, 0) + 1
            self._bytes[owner] = held + size
        return obj

    def get(self, obj_id: str, user: str, is_owner: bool) -> Value:
        """The value behind an id, if ``user`` may use it (same error whether absent or not)."""
        if obj_id.startswith("asset:"):
            dataset, _, asset = obj_id[6:].partition("/")
            key = f"{dataset}/{asset}"
            with self._lock:
                cached = self._assets.get(key)
            if cached is None:
                cached = self._load_asset(dataset, asset)
                with self._lock:
                    self._assets[key] = cached
            return cached
        obj = self.entry(obj_id)
        if obj is None or (obj.owner != user and not is_owner):
            raise NotFound(f"no object {obj_id!r} here: it was deleted, or the node restarted, or it is not yours")
        return obj.value

    def entry(self, obj_id: str) -> StoredObject | None:
        """The stored object, loading it from disk if it was persisted before a restart."""
        obj = self._objects.get(obj_id)
        if obj is None and obj_id.startswith("o"):
            loaded = self._load_persisted(obj_id)
            if loaded is not None:
                with self._lock:
                    obj = self._objects.setdefault(obj_id, loaded)
                    if obj is loaded:  # counted against its owner again, as when it was made
                        obj.size = charge(obj.value)
                        self._counts[obj.owner] = self._counts.get(obj.owner, 0) + 1
                        self._bytes[obj.owner] = self._bytes.get(obj.owner, 0) + obj.size
        return obj

    def provenance(self, obj_id: str) -> dict[str, Any] | None:
        return self._provenance.get(obj_id)

    def adopt(self, obj: StoredObject) -> None:
        """Add an object made elsewhere (a code run's output) under its own id."""
        obj.size = nbytes(obj.value.value)
        with self._lock:
            self._objects[obj.id] = obj
            self._counts[obj.owner] = self._counts.get(obj.owner, 0) + 1
            self._bytes[obj.owner] = self._bytes.get(obj.owner, 0) + obj.size

    def delete(self, obj_ids: list[str], user: str, is_owner: bool) -> int:
        removed = 0
        with self._lock:
            for i in obj_ids:
                obj = self._objects.get(i)
                if obj is not None and (obj.owner == user or is_owner):
                    del self._objects[i]
                    self._counts[obj.owner] = self._counts.get(obj.owner, 1) - 1
                    self._bytes[obj.owner] = max(0, self._bytes.get(obj.owner, 0) - obj.size)
                    removed += 1
        return removed

    def forget_asset(self, dataset: str) -> None:
        """Drop a deleted dataset's assets and every stored value derived from them."""
        with self._lock:
            for key in [k for k in self._assets if k.startswith(dataset + "/")]:
                del self._assets[key]
            for obj_id, obj in list(self._objects.items()):
                if any(e.split("/", 1)[0] == dataset for e in obj.value.lineage):
                    del self._objects[obj_id]
                    self._counts[obj.owner] = max(0, self._counts.get(obj.owner, 0) - 1)
                    self._bytes[obj.owner] = max(0, self._bytes.get(obj.owner, 0) - obj.size)

    def __len__(self) -> int:
        return len(self._objects)
