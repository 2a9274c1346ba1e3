"""The gateway's state: its database, settings and name, and the events it pushes to nodes."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_kernel.core.keys import read_keypair

from .config import GatewayConfig
from .db import GatewayDB


@dataclass(frozen=True)
class Peer:
    """Who sent a message: the CURVE key its handshake proved, and the node that key belongs to."""

    public_key: str
    node: dict[str, Any] | None

    @property
    def node_name(self) -> str | None:
        return self.node["name"] if self.node else None


class Gateway:
    """A gateway folder's database and settings; the handlers act on it."""

    def __init__(self, folder: str | Path, config: GatewayConfig | None = None) -> None:
        self.folder = Path(folder)
        self.db = GatewayDB(self.folder / "gateway.db")
        self.config = config if config is not None else GatewayConfig.load(self.folder)
        self.name = self.db.get_meta("name") or self.folder.name
        self.keys = read_keypair(self.folder / "keys" / "gateway.key")
        self.events: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()  # (node key, event)
        self.started_at = time.time()

    def peer(self, public_key: str) -> Peer:
        return Peer(public_key, self.db.node_by_key(public_key))

    def online(self, node: dict[str, Any], now: float | None = None) -> bool:
        return node["status"] == "admitted" and (now or time.time()) - node["last_seen"] <= self.config.offline_after_s

    def notify_node(self, public_key: str, event: dict[str, Any]) -> None:
        self.events.put((public_key, event))
