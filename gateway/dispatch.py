"""The one table of what the gateway answers: message type → handler (with its typed body)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syft_kernel.core import schema

from .handlers import accounts, listings, nodes
from .state import Gateway, Peer

Handler = Callable[[Gateway, Peer, Any], dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    "gateway.hello": nodes.hello,
    "gateway.join": nodes.join,
    "gateway.leave": nodes.leave,
    "gateway.heartbeat": nodes.heartbeat,
    "gateway.nodes": nodes.nodes,
    "gateway.publish": listings.publish,
    "gateway.search": listings.search,
    "gateway.account.request": accounts.request,
    "gateway.account.status": accounts.status,
    "gateway.accounts.pending": accounts.pending,
    "gateway.account.settle": accounts.settle,
}
assert set(HANDLERS) == set(schema.GATEWAY_MESSAGES), "every gateway message has one body and one handler"


def handle(gw: Gateway, peer: Peer, msg_type: str, body: Any) -> dict[str, Any]:
    """Route one message to its handler with its typed body (``SyftError`` for a refusal)."""
    typed = schema.decode(msg_type, body, schema.GATEWAY_MESSAGES)
    return HANDLERS[msg_type](gw, peer, typed)
