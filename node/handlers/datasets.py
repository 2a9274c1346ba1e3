"""Datasets: uploaded by an owner (assets stay private, mocks are public), listed and searched,
described, their mocks fetched, pointers to their assets made, deleted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from syft_kernel.core import codec
from syft_kernel.core import public as declarations
from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument, NotFound, SyftError
from syft_kernel.core.executor import Value, describe, type_key
from syft_kernel.core.mock import make_mock

from .. import storage
from ..governance import check_policy
from ..state import DataNode, User
from . import Buffers, Reply

log = logging.getLogger("syft_kernel.node")


def upload(node: DataNode, user: User, body: s.DatasetsUpload, buffers: Buffers) -> Reply:
    name = body.name
    if node.db.dataset(name) is not None:
        raise InvalidArgument(f"dataset {name!r} exists already: pick another name or delete it first")
    tags = body.tags
    if not all(0 < len(t) <= 64 for t in tags):
        raise InvalidArgument("tags are a list of short strings")
    if len(body.description) > 10_000:
        raise InvalidArgument("the description is a string of at most 10,000 characters")
    if not body.assets:
        raise InvalidArgument("a dataset has at least one asset")
    subject_column = body.subject_column
    owners = body.owners or [user.name]
    known_owners = {u["name"] for u in node.db.users() if u["role"] == "owner"}
    missing = sorted({o for o in owners if o not in known_owners})
    if missing:
        raise InvalidArgument(
            f"{_names(missing)} {'is not a data owner' if len(missing) == 1 else 'are not data owners'} on this "
            f"node (its owners: {', '.join(sorted(known_owners))}): add each first with "
            f"owner.users.add(NAME, role='owner', public_key='NAME.pub'), then upload again"
        )
    owners = sorted(set(owners))
    policy = check_policy(body.policy or {"kind": "single"}, owners)
    bounds = body.bounds
    if not all(
        len(v) == 2 and all(type(x) in (int, float) for x in v) and v[0] < v[1] and all(x == x for x in v)
        for v in bounds.values()
    ):
        raise InvalidArgument("bounds map column names to public (lower, upper) pairs, lower < upper")
    public: dict[str, Any] = dict(body.public)
    for k, v in bounds.items():  # bounds= is the older way to declare numeric ranges: one notion
        if k in public and public[k] != {"range": list(v)}:
            raise InvalidArgument(f"bounds[{k!r}] and public[{k!r}] disagree: declare the range once")
        public[k] = {"range": list(v)}
    subject_limit = body.subject_limit
    if subject_limit < 0 or subject_limit != subject_limit:
        raise InvalidArgument("subject_limit is a non-negative privacy loss per data subject (0: no limit)")
    if subject_limit and not subject_column:
        raise InvalidArgument("a per-subject limit needs subject_column to tell the subjects apart")
    max_rows = body.max_rows_per_subject
    if not 1 <= max_rows <= 10_000:
        raise InvalidArgument("max_rows_per_subject is a whole number from 1 to 10000")
    dec = codec.Decoder(buffers)
    written: list[str] = []
    rows: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for a in body.assets:
        if a.name in values:
            raise InvalidArgument(f"asset {a.name!r} appears twice")
        with _storable(a.name):
            values[a.name] = dec.decode(a.value)
    public = declarations.check(public, declarations.columns_of(values))  # against the schema, not the values
    try:
        for a in body.assets:
            aname = a.name
            with _storable(aname):
                value = values[aname]
                kind = storage.kind_of(value)
                mock = dec.decode(a.mock) if a.mock is not None else make_mock(value, public=public)
                if storage.kind_of(mock) != kind:
                    raise InvalidArgument(f"the mock of {aname!r} must be the same kind of value as the asset")
                _check_mock_schema(aname, value, mock)
                if (
                    subject_column is not None
                    and type_key(value) == "DataFrame"
                    and subject_column not in value.columns
                ):
                    raise InvalidArgument(f"subject_column {subject_column!r} is not a column of {aname!r}")
                _, path = storage.write_asset(node.assets_dir, value)
                written.append(path)
                _, mock_path = storage.write_asset(node.assets_dir, mock)
                written.append(mock_path)
                meta = describe(Value(value), reveal=True)
                meta.pop("private", None)
                meta["series"] = type_key(value) == "Series"
                rows.append({"name": aname, "kind": kind, "path": path, "mock_path": mock_path, "meta": meta})
        node.db.add_dataset(
            name,
            body.description,
            tags,
            subject_column,
            user.name,
            rows,
            owners,
            policy,
            public,
            max_rows,
            float(subject_limit),
        )
        node.ledger.apply_defaults(name)  # scientists added with a budget for every dataset
    except BaseException:
        for p in written:
            (node.assets_dir / p).unlink(missing_ok=True)
        raise
    node.db.audit(user.name, "datasets.upload", name, assets=[r["name"] for r in rows])
    node.network.changed(name)  # its listing, on the network the node belongs to
    log.info("%s uploaded dataset %s (%s)", user.name, name, ", ".join(r["name"] for r in rows))
    return node.db.dataset(name), []


@contextlib.contextmanager
def _storable(aname: str) -> Iterator[None]:
    """Odd values (types parquet or the mock maker cannot handle) are the uploader's to fix."""
    try:
        yield
    except SyftError:
        raise
    except MemoryError:
        raise InvalidArgument(f"asset {aname!r} is too big to store on this node") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        ArithmeticError,
        NotImplementedError,
        pa.ArrowException,
    ) as e:
        raise InvalidArgument(
            f"asset {aname!r} cannot be stored: {type(e).__name__}: "
            f"{codec.short_repr(str(e))}; convert it to plain columns first"
        ) from None


def _check_mock_schema(name: str, value: Any, mock: Any) -> None:
    if type_key(value) == "DataFrame" and list(map(str, mock.columns)) != list(map(str, value.columns)):
        raise InvalidArgument(f"the mock of {name!r} must have the asset's columns {list(value.columns)}")
    if type_key(value) in ("ndarray", "Tensor") and tuple(mock.shape[1:]) != tuple(value.shape[1:]):
        raise InvalidArgument(f"the mock of {name!r} must have the asset's trailing shape {tuple(value.shape[1:])}")


def delete(node: DataNode, user: User, body: s.DatasetsDelete, buffers: Buffers) -> Reply:
    name = body.name
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
    node.network.changed(name)
    log.info("%s deleted dataset %s", user.name, name)
    return {"deleted": name}, []


def list_(node: DataNode, user: User, body: s.DatasetsList, buffers: Buffers) -> Reply:
    """Datasets whose text has every word of ``query`` and that carry every tag, a page at a time."""
    query = body.query.lower()
    tags = [t.lower() for t in body.tags]
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
    offset, limit = body.offset, body.limit
    if offset < 0 or (limit is not None and limit < 0):
        raise InvalidArgument("offset and limit are non-negative integers (a page of the results)")
    page = out[offset:] if limit is None else out[offset : offset + limit]
    return {"datasets": page, "total": len(out), "tags": sorted(all_tags)}, []


def get(node: DataNode, user: User, body: s.DatasetsGet, buffers: Buffers) -> Reply:
    d = node.db.dataset(body.name)
    if d is None:
        raise NotFound(f"no dataset {body.name!r} on {node.name}: list them with client.datasets")
    return d, []


def mock(node: DataNode, user: User, body: s.DatasetsMock, buffers: Buffers) -> Reply:
    tree, bufs = codec.encode_value(node._read_mock(body.dataset, body.asset))
    return {"value": tree}, bufs


def asset_pointer(node: DataNode, user: User, body: s.AssetPointer, buffers: Buffers) -> Reply:
    obj_id = f"asset:{body.dataset}/{body.asset}"
    value = node.store.get(obj_id, user.name, user.is_owner)
    return {"id": obj_id, "meta": describe(value, reveal=True)}, []


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
