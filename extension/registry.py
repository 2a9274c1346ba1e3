"""The local data nodes a Jupyter server knows: found in a folder, started and stopped on demand,
and reached as their owner (each node folder holds its owner's key)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from syft_kernel.client import Client
from syft_kernel.errors import InvalidArgument, NodeUnavailable, NotFound, SyftError
from syft_kernel.keys import read_connection_file
from syft_kernel.launcher import NodeProcess, pid_alive, start_node
from syft_kernel.node.service import check_name

CALL_TIMEOUT = 5.0


def default_nodes_dir() -> Path:
    """``$SYFT_KERNEL_NODES``, else ``<jupyter data dir>/syft-kernel/nodes``."""
    if os.environ.get("SYFT_KERNEL_NODES"):
        return Path(os.environ["SYFT_KERNEL_NODES"])
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "syft-kernel" / "nodes"


class NodeRegistry:
    """Node folders under ``nodes_dir`` (one per sub-folder) plus any ``extra`` folders."""

    def __init__(self, nodes_dir: Path, extra: list[Path] | None = None) -> None:
        self.nodes_dir = Path(nodes_dir)
        self.extra = [Path(p) for p in extra or []]
        self.started: dict[str, NodeProcess] = {}
        self._clients: dict[str, Client] = {}
        self._lock = threading.RLock()

    # ---- what is there
    def folders(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        candidates = sorted(self.nodes_dir.iterdir()) if self.nodes_dir.is_dir() else []
        for folder in [*candidates, *self.extra]:
            if (folder / "node.db").exists():
                found.setdefault(_node_name(folder), folder)
        return found

    def folder(self, name: str) -> Path:
        folders = self.folders()
        if name not in folders:
            known = ", ".join(folders) or "none yet"
            raise NotFound(f"no local node {name!r} (known: {known}); create one with POST /syft/api/nodes")
        return folders[name]

    def describe(self, name: str) -> dict[str, Any]:
        folder = self.folder(name)
        info = _connection(folder)
        pid = info.get("pid")
        running = bool(pid) and pid_alive(int(pid))
        return {"name": name, "folder": str(folder), "status": "running" if running else "stopped",
                "pid": pid if running else None, "addresses": info.get("addresses", []) if running else [],
                "managed": name in self.started and self.started[name].alive(),
                "connection_file": str(folder / "connection.json"), "owner_key": str(folder / "keys" / "owner.key")}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.folders()]

    # ---- start and stop
    def start(self, name: str, port: int | None = None) -> dict[str, Any]:
        """Serve node ``name`` (creating it under ``nodes_dir`` if it is new)."""
        check_name(name, "node")
        with self._lock:
            folders = self.folders()
            folder = folders.get(name, self.nodes_dir / name)
            if folder.exists() and not (folder / "node.db").exists() and any(folder.iterdir()):
                raise InvalidArgument(f"{folder} exists and is not a node folder; pick another name")
            if name in folders and self.describe(name)["status"] == "running":
                return self.describe(name)
            if port is None:
                port = _last_port(folder)
            self.started[name] = start_node(folder, name=name, port=port or 0)
            self._drop_client(name)
            return self.describe(name)

    def stop(self, name: str) -> dict[str, Any]:
        """Stop node ``name`` cleanly (SIGTERM), whoever started it."""
        with self._lock:
            self._drop_client(name)
            proc = self.started.pop(name, None)
            if proc is not None:
                proc.stop()
            else:
                pid = _connection(self.folder(name)).get("pid")
                if pid and pid_alive(int(pid)):
                    os.kill(int(pid), signal.SIGTERM)
                    _wait_gone(int(pid), 10.0)
            return self.describe(name)

    def stop_started(self) -> None:
        """Stop the nodes this server started (when Jupyter shuts down)."""
        with self._lock:
            for name in list(self.started):
                self._drop_client(name)
                self.started.pop(name).stop()

    # ---- talking to a node as its owner
    def client(self, name: str) -> Client:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                described = self.describe(name)
                if described["status"] != "running":
                    raise NodeUnavailable(f"node {name!r} is stopped: start it from the dashboard "
                                          f"or POST /syft/api/nodes/{name}/start")
                folder = Path(described["folder"])
                from syft_kernel.keys import read_keypair

                client = Client(read_connection_file(folder / "connection.json"),
                                read_keypair(folder / "keys" / "owner.key"), timeout=CALL_TIMEOUT)
                self._clients[name] = client
            return client

    def call(self, name: str, fn: Any) -> Any:
        """Run ``fn(client)`` as the node's owner; a connection that failed is dropped and remade."""
        client = self.client(name)
        try:
            return fn(client)
        except NodeUnavailable:
            self._drop_client(name)
            raise

    def _drop_client(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            try:
                client.close()
            except SyftError:
                pass

    def close(self) -> None:
        with self._lock:
            for name in list(self._clients):
                self._drop_client(name)


def _node_name(folder: Path) -> str:
    return str(_connection(folder).get("name") or folder.name)


def _connection(folder: Path) -> dict[str, Any]:
    try:
        return read_connection_file(folder / "connection.json")
    except (SyftError, OSError, ValueError):
        return {}


def _last_port(folder: Path) -> int:
    for address in _connection(folder).get("addresses", []):
        if str(address).startswith("tcp://"):
            return int(str(address).rsplit(":", 1)[1])
    return 0


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
