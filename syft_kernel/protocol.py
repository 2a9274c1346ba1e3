"""What both client transports share: building a request's frames, and reading what comes back
(a reply for a message id, or an event the node pushed). No I/O here.

``Client`` (``client.py``) runs it on the calling thread; ``AsyncClient`` (``aio.py``) on an
asyncio event loop. Either way many requests may be in flight on one DEALER socket: a reply is
matched to its request by message id.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from typing import Any

from .core import codec, schema
from .core.errors import AuthenticationError, SyftError, from_wire
from .core.keys import KeyPair

Reply = tuple[Any, list[Any]]


def require_secret(key: KeyPair) -> None:
    """A login needs the secret half of the key pair (``NAME.key``), not only ``NAME.pub``."""
    if key.secret is None:
        raise AuthenticationError("that key file holds only a public key: log in with NAME.key, not NAME.pub")


class Session:
    """Message ids, the pointers dropped since the last message, and the events not yet taken."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.freed: list[str] = []
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=512)

    def frames(
        self, msg: str | schema.Body, body: Any = None, buffers: Sequence[Any] = (), noreply: bool = False
    ) -> tuple[int, list[Any]]:
        """A new message id and the frames of the message (dropped pointers ride along)."""
        msg_type, body = (msg.TYPE, msg.to_wire()) if isinstance(msg, schema.Body) else (msg, body)
        msg_id = next(self.ids)
        header: dict[str, Any] = {"id": msg_id, "type": msg_type}
        if noreply:
            header["noreply"] = True
        freed, self.freed = self.freed, []
        if freed:  # the node frees them before it handles this message
            header["free"] = freed
        return msg_id, codec.pack_message(header, {} if body is None else body, buffers)

    def free_frames(self) -> list[Any] | None:
        """A no-reply ``del`` of every dropped pointer, if any."""
        ids, self.freed = self.freed, []
        if not ids:
            return None
        return codec.pack_message({"id": next(self.ids), "type": "del", "noreply": True}, {"ids": ids})

    def read(self, frames: Sequence[Any]) -> tuple[int | None, Reply | SyftError | None]:
        """What a received message is: ``(msg_id, reply or error)``, ``(None, event)`` for an event
        the node pushed (also kept in ``events``), or ``(None, None)`` for something unreadable."""
        if len(frames) < 2:
            return None, None
        header = codec.unpack_header(frames[0], require_id=False)
        if header.get("type") == "event":
            event = codec.unpack_body(frames[1])
            if not isinstance(event, dict):
                return None, None
            self.events.append(event)
            return None, event  # type: ignore[return-value]
        msg_id = header.get("id")
        if type(msg_id) is not int:
            return None, None
        try:
            body = codec.unpack_body(frames[1], limit=2**31)
        except SyftError as e:
            return msg_id, e
        if header.get("status") == "error":
            return msg_id, from_wire(body if isinstance(body, dict) else {})
        return msg_id, (body, list(frames[2:]))

    def take_event(self, match: Any) -> dict[str, Any] | None:
        for event in list(self.events):
            if match(event):
                self.events.remove(event)
                return event
        return None

    def discard_events(self, request_id: str) -> None:
        for event in [e for e in self.events if e.get("request") == request_id]:
            self.events.remove(event)
