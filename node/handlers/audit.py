"""The audit log, filtered (owners only)."""

from __future__ import annotations

import math

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument

from ..state import DataNode, User
from . import Buffers, Reply


def list_(node: DataNode, user: User, body: s.AuditList, buffers: Buffers) -> Reply:
    if not 0 < body.limit <= 100_000:
        raise InvalidArgument("limit is an integer between 1 and 100000")
    if body.since is not None and not math.isfinite(body.since):
        raise InvalidArgument("since is a time (seconds since 1970)")
    filters = {k: v for k, v in (("user", body.user), ("action", body.action), ("target", body.target)) if v}
    return {"entries": node.db.audit_log(body.limit, since=body.since, **filters)}, []
