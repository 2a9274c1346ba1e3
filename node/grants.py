"""What an approval covers: the content a plan or code request touches, bound into its hash.

A plan's hash covers its ops, every literal (raw buffers by their SHA-256) and the results it
returns; its lineage is that of every object it references, not only its declared inputs; and
each referenced asset is bound by its stored version, so a dataset deleted and uploaded again
under the same name is not covered by an approval given for the old one. At run time the results
released under an approval must stay within the datasets the approval was given for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from syft_kernel.core.errors import ProtocolError
from syft_kernel.core.plan import plan_hash, referenced_ids


def content_versions(node: Any, ids: Iterable[str]) -> dict[str, str]:
    """The stored version of each referenced asset (its file's random name). Objects other than
    assets are immutable under their random id, so the id is their version."""
    out: dict[str, str] = {}
    for obj_id in ids:
        if obj_id.startswith("asset:"):
            dataset, _, asset = obj_id[6:].partition("/")
            row = node.db.asset(dataset, asset)
            out[obj_id] = row["path"] if row is not None else "missing"
    return out


def plan_lineage(node: Any, user: Any, ops: Any, input_ids: Sequence[str]) -> set[str]:
    """The private assets a plan can read: through its inputs and through every object it names."""
    lineage: set[str] = set()
    for obj_id in {*input_ids, *referenced_ids(ops)}:
        lineage |= node.store.get(obj_id, user.name, user.is_owner).lineage
    return lineage


def plan_grant(
    node: Any, user: Any, claimed: Any, ops: Any, keep: list[int], input_ids: list[str], buffers: Sequence[Any]
) -> dict[str, Any] | None:
    """The approved plan request covering exactly this run (same hash over ops, literals and
    buffers; same inputs; same versions of every asset it touches), if any."""
    if claimed is None or user.is_owner:
        return None
    actual = plan_hash(ops, keep, buffers)
    if claimed != actual:
        raise ProtocolError("the plan's hash does not match its ops, literals and buffers")
    touched = content_versions(node, [*input_ids, *referenced_ids(ops)])
    for row in node.db.requests(requester=user.name, kind="plan", status="approved"):
        approved = row["inputs"]
        if row["target"] == actual and approved.get("ids") == input_ids and approved.get("versions") == touched:
            return row
    return None


def within_approval(lineage: Iterable[str], approved: Iterable[str]) -> bool:
    """Whether a result reads only the data an approval was given for."""
    return set(lineage) <= set(approved)
