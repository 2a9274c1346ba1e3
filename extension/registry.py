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
from syft_kernel.core.errors import InvalidArgument, NodeUnavailable, NotFound, SyftError
from syft_kernel.core.keys import read_connection_file, read_keypair
from syft_kernel.core.names import check_name
from syft_kernel.core.procs import pid_alive
from syft_kernel.launcher import NodeProcess, start_node

CALL_TIMEOUT = 5.0


def default_nodes_dir() -> Path:
    """``$SYFT_KERNEL_NODES``, else ``<jupyter data dir>/syft-kernel/nodes``."""
    if os.environ.get("SYFT_KERNEL_NODES"):
        return Path(os.environ["SYFT_KERNEL_NODES"])
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "syft-kernel" / "nodes"


class NodeRegistry:
    """Node folders under ``nodes_dir`` (one per sub-folder) plus any ``extra`` folders.

    Work on one node (connecting, starting, stopping) holds only that node's lock, so a node that
    is slow or stuck never holds up the others."""

    def __init__(self, nodes_dir: Path, extra: list[Path] | None = None) -> None:
        self.nodes_dir = Path(nodes_dir).resolve()
        self.extra = [Path(p).resolve() for p in extra or []]
        self.started: dict[str, NodeProcess] = {}
        self._clients: dict[str, Client] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

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
        pid = serving_pid(folder)
        return {
            "name": name,
            "folder": str(folder),
            "status": "running" if pid else "stopped",
            "pid": pid,
            "addresses": _connection(folder).get("addresses", []) if pid else [],
            "managed": name in self.started and self.started[name].alive(),
            "connection_file": str(folder / "connection.json"),
            "owner_key": str(folder / "keys" / "owner.key"),
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.folders()]

    # ---- start and stop
    def start(self, name: str, port: int | None = None) -> dict[str, Any]:
        """Serve node ``name`` (creating it under ``nodes_dir`` if it is new)."""
        check_name(name, "node")
        with self._lock(name):
            folders = self.folders()
            folder = folders.get(name)
            if folder is None:
                folder = self.nodes_dir / name
                other = next((n for n, f in folders.items() if f == folder), None)
                if other is not None:
                    raise InvalidArgument(f"{folder} already holds node {other!r}: start that one")
                if folder.exists() and any(folder.iterdir()):
                    raise InvalidArgument(f"{folder} exists and is not a node folder; pick another name")
            elif serving_pid(folder):
                return self.describe(name)
            self._drop_client(name)
            last = _last_port(folder) if port is None else port
            try:
                self.started[name] = start_node(folder, name=name, port=last)
            except NodeUnavailable:
                if port is not None or not last:
                    raise
                self.started[name] = start_node(folder, name=name, port=0)  # its old port is taken now
            return self.describe(name)

    def stop(self, name: str) -> dict[str, Any]:
        """Stop node ``name`` cleanly (SIGTERM), whoever started it."""
        with self._lock(name):
            self._drop_client(name)
            proc = self.started.pop(name, None)
            if proc is not None:
                proc.stop()
            else:
                pid = serving_pid(self.folder(name))
                if pid:
                    os.kill(pid, signal.SIGTERM)
                    _wait_gone(pid, 10.0)
            return self.describe(name)

    def stop_started(self) -> None:
        """Stop the nodes this server started (when Jupyter shuts down)."""
        for name in list(self.started):
            with self._lock(name):
                self._drop_client(name)
                proc = self.started.pop(name, None)
                if proc is not None:
                    proc.stop()

    # ---- talking to a node as its owner
    def client(self, name: str) -> Client:
        with self._lock(name):
            client = self._clients.get(name)
            if client is None:
                folder = self.folder(name)
                if not serving_pid(folder):
                    raise NodeUnavailable(
                        f"node {name!r} is stopped: start it from the dashboard or POST /syft/api/nodes/{name}/start"
                    )
                client = Client(
                    read_connection_file(folder / "connection.json"),
                    read_keypair(folder / "keys" / "owner.key"),
                    timeout=CALL_TIMEOUT,
                )
                self._clients[name] = client
            return client

    def call(self, name: str, fn: Any) -> Any:
        """Run ``fn(client)`` as the node's owner; a connection that failed is dropped and remade."""
        client = self.client(name)
        try:
            return fn(client)
        except NodeUnavailable:
            with self._lock(name):
                if self._clients.get(name) is client:
                    self._drop_client(name)
            raise

    def _drop_client(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for name in list(self._clients):
            with self._lock(name):
                self._drop_client(name)


def serving_pid(folder: Path) -> int | None:
    """The pid of the process serving ``folder``, or None. The pid in the connection file is only
    trusted if that process is this folder's ``node serve`` (pids are reused after a crash)."""
    pid = _connection(folder).get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no /proc on this system: a live pid is the best evidence there is
        return pid
    try:
        args = proc.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = os.readlink(proc / "cwd")
    except OSError:  # not ours to inspect (another user's process): not our node
        return None
    if "serve" not in args or args.index("serve") + 1 >= len(args):
        return None
    served = Path(cwd, args[args.index("serve") + 1]).resolve()
    return pid if served == folder.resolve() else None


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
