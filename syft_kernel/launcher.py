"""Start and stop a data node as a child process: for notebooks, tests, the demo and dashboards.

``start_node(folder, name="hospital")`` makes the folder if it is new, serves it in a separate
process (``syft-kernel node serve``) and returns when the node answers on its port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.errors import NodeUnavailable
from .core.keys import read_connection_file

#: Called with each ``NodeProcess`` once it serves: the pytest plugin tracks every node this way.
on_start: list[Callable[[NodeProcess], None]] = []


class NodeProcess:
    """A node served by a child process. Stop it with ``stop()`` or use it as a context manager."""

    def __init__(self, folder: Path, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.folder = folder
        self.proc = proc
        self.log_path = log_path
        self.killed = False  # set by ``kill()``: an exit on purpose, not a crash

    @property
    def connection_file(self) -> Path:
        """The node's connection file (give it to users)."""
        return self.folder / "connection.json"

    @property
    def owner_key(self) -> Path:
        """The first owner's secret key file."""
        return self.folder / "keys" / "owner.key"

    @property
    def connection(self) -> dict[str, Any]:
        """The connection file's contents (addresses and the node's public key)."""
        return read_connection_file(self.connection_file)

    def login(self, key: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        """Log in to this node (as the owner unless ``key`` is given)."""
        from .client import login

        return login(self.connection_file, key=key or self.owner_key, **kwargs)

    def log(self) -> str:
        """The node's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """Whether the node process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for a clean shutdown, SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"<NodeProcess {self.folder} pid {self.proc.pid} {state}>"


def start_node(
    folder: str | os.PathLike[str],
    name: str = "node",
    port: int = 0,
    host: str = "127.0.0.1",
    ipc: bool = True,
    timeout: float = 30.0,
    log_level: str = "INFO",
    stop_with_parent: bool = True,
    settings: dict[str, Any] | None = None,
) -> NodeProcess:
    """Serve ``folder`` in a child process (creating the node first if the folder is new).

    ``port=0`` picks a free port; the connection file is rewritten with the real address. With
    ``stop_with_parent`` (the default) the node stops when this process exits, even if killed.
    ``settings`` are ``NodeConfig`` values for this run (e.g. ``{"quota_mb": 64}``).
    """
    folder = Path(folder)
    if not (folder / "node.db").exists():
        from syft_kernel.node.nodedir import init_node

        init_node(folder, name, host=host, port=port)
    cmd = [
        sys.executable,
        "-m",
        "syft_kernel.cli",
        "--log-level",
        log_level,
        "node",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--host",
        host,
    ]
    if not ipc:
        cmd.append("--no-ipc")
    if stop_with_parent:
        cmd += ["--parent-pid", str(os.getpid())]
    cmd += [f"--NodeConfig.{k}={v}" for k, v in (settings or {}).items()]
    return _launch(folder, cmd, "node", timeout)


def _launch(folder: Path, cmd: list[str], what: str, timeout: float) -> NodeProcess:
    """Run ``cmd`` (a ``serve``) with its log in ``folder/WHAT.log``; return once it serves."""
    log_path = folder / f"{what}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the log names private objects
    os.chmod(log_path, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    node = NodeProcess(folder, proc, log_path) if what == "node" else GatewayProcess(folder, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeUnavailable(f"the {what} exited with code {proc.returncode}:\n{node.log()[-2000:]}")
        if _serving(folder / "connection.json", proc.pid):
            for hook in list(on_start):
                hook(node)
            return node
        time.sleep(0.05)
    node.kill()
    raise NodeUnavailable(f"the {what} did not start within {timeout:.0f}s:\n{node.log()[-2000:]}")


class GatewayProcess(NodeProcess):
    """A gateway served by a child process (its connection file is what nodes join with)."""

    def login(self, key: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        """Connect to this gateway's network with ``key`` (a scientist's or any key file)."""
        from .network import connect_network

        if key is None:
            raise TypeError("connect to a gateway with a key: gateway.login(key='alice.key')")
        return connect_network(self.connection_file, key=key, **kwargs)

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"<GatewayProcess {self.folder} pid {self.proc.pid} {state}>"


def start_gateway(
    folder: str | os.PathLike[str],
    name: str = "grid",
    port: int = 0,
    host: str = "127.0.0.1",
    auto_admit: bool = False,
    timeout: float = 30.0,
    log_level: str = "INFO",
    stop_with_parent: bool = True,
    settings: dict[str, Any] | None = None,
) -> GatewayProcess:
    """Serve a gateway folder in a child process (creating it first if the folder is new).

    ``auto_admit`` admits every node that joins (a demo; else the operator runs
    ``syft-kernel gateway admit NAME``). ``settings`` are ``GatewayConfig`` values for this run.
    """
    folder = Path(folder)
    if not (folder / "gateway.db").exists():
        from syft_kernel.gateway.folder import init_gateway

        init_gateway(folder, name, host=host, port=port)
    cmd = [sys.executable, "-m", "syft_kernel.cli", "--log-level", log_level, "gateway", "serve", str(folder)]
    cmd += ["--port", str(port), "--host", host]
    if auto_admit:
        cmd.append("--auto-admit")
    if stop_with_parent:
        cmd += ["--parent-pid", str(os.getpid())]
    cmd += [f"--GatewayConfig.{k}={v}" for k, v in (settings or {}).items()]
    gateway = _launch(folder, cmd, "gateway", timeout)
    assert isinstance(gateway, GatewayProcess)
    return gateway


def _serving(connection_file: Path, pid: int) -> bool:
    """The server rewrites the connection file, with its pid, once its sockets are bound."""
    try:
        return read_connection_file(connection_file).get("pid") == pid
    except Exception:  # not written yet, or mid-rename
        return False
