"""Hello and the node's counters."""

from __future__ import annotations

import time

from syft_kernel.core import codec
from syft_kernel.core import schema as s

from ..state import DataNode, User
from . import Buffers, Reply


def hello(node: DataNode, user: User, body: s.Hello, buffers: Buffers) -> Reply:
    return {"node": node.name, "user": user.name, "role": user.role, "protocol": codec.PROTOCOL_VERSION}, []


def stats(node: DataNode, user: User, body: s.NodeStats, buffers: Buffers) -> Reply:
    """This user's message counts (and the whole node's, for owners)."""
    prefix = f"{user.name}:"
    mine = {k[len(prefix) :]: v for k, v in node.counters.items() if k.startswith(prefix)}
    out: dict[str, object] = {"node": node.name, "uptime": time.time() - node.started_at, "mine": mine}
    if user.is_owner:
        out.update(messages=node.counters["messages"], objects=len(node.store), counters=dict(node.counters))
    return out, []
