"""The network: the owner has the node join a gateway, leave it, and see how it stands."""

from __future__ import annotations

from syft_kernel.core import schema as s
from syft_kernel.core.errors import InvalidArgument
from syft_kernel.core.names import check_name

from ..network import check_gateway_connection
from ..state import DataNode, User
from . import Buffers, Reply


def join(node: DataNode, user: User, body: s.NetworkJoin, buffers: Buffers) -> Reply:
    connection = check_gateway_connection(body.connection)
    rows = body.public_rows
    if isinstance(rows, list):
        if len(rows) > 10_000:
            raise InvalidArgument("public_rows lists at most 10000 datasets")
        rows = [check_name(n, "dataset") for n in rows]
    reply = node.network.join(connection, rows)
    node.db.audit(user.name, "network.join", connection["name"])
    return {**reply, **node.network.describe()}, []


def leave(node: DataNode, user: User, body: s.NetworkLeave, buffers: Buffers) -> Reply:
    out = node.network.leave()
    node.db.audit(user.name, "network.leave", out["left"], told=out["told"])
    return out, []


def status(node: DataNode, user: User, body: s.NetworkStatus, buffers: Buffers) -> Reply:
    return node.network.describe(), []
