"""The gateway's message handlers, one module per concept: nodes (join, leave, heartbeat),
listings (publish, search) and account requests. Each takes the gateway, the peer and the typed
body, and returns the reply body."""

from __future__ import annotations

from syft_kernel.core.errors import Unauthorized

from ..state import Peer


def member(peer: Peer, admitted: bool = True) -> dict[str, object]:
    """The node that sent this message, or a clear refusal (for messages only nodes send)."""
    if peer.node is None:
        raise Unauthorized("only a member node sends this: join first (owner.network.join(...))")
    if peer.node["status"] == "removed":
        raise Unauthorized(f"the gateway's operator removed {peer.node['name']}: ask them to admit it again")
    if admitted and peer.node["status"] != "admitted":
        raise Unauthorized(
            f"{peer.node['name']} waits for the gateway's operator to admit it "
            f"(syft-kernel gateway admit {peer.node['name']})"
        )
    return peer.node
