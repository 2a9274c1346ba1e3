"""The node's message handlers, one module per concept. Each handler takes the node's state, the
authenticated user, the typed body (``core.schema``) and the message's buffers, and returns the
reply body and buffers. ``node/dispatch.py`` is the table that routes message types to them."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

Reply = tuple[Any, list[Any]]
Buffers = Sequence[Any]


class Later:
    """A reply that comes when ``future`` does (a federated round): the handler returns at once,
    its worker is free, and the server sends the future's ``(body, buffers)``, or its error, when
    it is done."""

    def __init__(self, future: Future[Reply]) -> None:
        self.future = future
        self.frames: Any = None  # set by the server: makes the reply's frames once the future is done
