"""The node's message handlers, one module per concept. Each handler takes the node's state, the
authenticated user, the typed body (``core.schema``) and the message's buffers, and returns the
reply body and buffers. ``node/dispatch.py`` is the table that routes message types to them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Reply = tuple[Any, list[Any]]
Buffers = Sequence[Any]
