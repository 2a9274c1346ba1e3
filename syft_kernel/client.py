"""``login`` and ``Client``: a user on one node, over the shared socket of ``transport.py``.

``login`` reads a connection file and a key file, connects (``ipc://`` when the node is on this
host, else TCP) and says hello; a key the node does not know is reported at once from the
socket's handshake events instead of a silent timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import zmq

from .aio import DEFAULT_TIMEOUT, AsyncClient, pick_address, resolve_login, run_sync
from .audit import AuditLog
from .core import schema
from .core.errors import NodeUnavailable, Unauthorized
from .core.keys import KeyPair
from .protocol import require_secret
from .records import Stats
from .transport import Transport


class Client:
    """A logged-in user on one node. Use ``login()``.

    Thread-safe: calls from several threads (a cell, a widget's watcher) are in flight on the
    one socket together. ``client.aio`` is an ``AsyncClient`` for the same user and node, for
    ``async`` code and for many requests at once.
    """

    def __init__(
        self, connection: dict[str, Any], key: KeyPair, timeout: float = DEFAULT_TIMEOUT, address: str | None = None
    ) -> None:
        require_secret(key)
        self.connection = connection
        self.key = key
        self.timeout = timeout
        self.address = address or pick_address(connection)
        self._batch: Any = None
        self._aio: AsyncClient | None = None
        self.last_plan: list[dict[str, Any]] = []
        self.views: dict[str, Any] = {}  # the live widgets shown for this client, one per kind
        self.connection_path: Path | None = None  # the connection file logged in with, if any
        self.key_path: Path | None = None  # the key file logged in with, if any
        self._io = Transport(connection, key, self.address, str(connection.get("name", "the node")))
        try:
            hello = self._io.wait(self._io.send(schema.Hello(), timeout=timeout), timeout)
        except NodeUnavailable:
            self._io.close()
            raise NodeUnavailable(
                f"{connection.get('name', 'the node')} at {self.address} did not answer in "
                f"{timeout:.0f}s: is it running (`syft-kernel node serve DIR`)?"
            ) from None
        except BaseException:
            self._io.close()
            raise
        self._io.stop_monitor()
        self.node_name: str = hello[0]["node"]
        self.user: str = hello[0]["user"]
        self.role: str = hello[0]["role"]
        self._io.label = self.node_name
        from .code import CodeAPI
        from .datasets import DatasetsAPI
        from .dp import Budgets
        from .requests import RequestsAPI
        from .users import UsersAPI

        self.datasets = DatasetsAPI(self)
        self.users = UsersAPI(self)
        self.requests = RequestsAPI(self)
        self.code = CodeAPI(self)
        self.budget = Budgets(self)
        from .network import NetworkMembership

        self.network = NetworkMembership(self)
        self.last_release: dict[str, Any] = {}

    # ---- messaging
    @property
    def round_trips(self) -> int:
        """Requests sent that wanted a reply (a plan is one, however many ops)."""
        return self._io.round_trips

    @property
    def _sock(self) -> zmq.Socket[Any]:
        return cast("zmq.Socket[Any]", self._io.sock)

    def call(
        self,
        msg: str | schema.Body,
        body: Any = None,
        buffers: list[Any] | tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> tuple[Any, list[Any]]:
        """One request and its reply. ``msg`` is a typed body (``core.schema``) or a message type
        with its ``body`` map. Raises the node's error as a ``SyftError``.
        """
        wait = timeout or self.timeout
        return self._io.wait(self._io.send(msg, body, buffers, timeout=wait), wait)

    def send(self, msg: str | schema.Body, body: Any = None, buffers: list[Any] | tuple[Any, ...] = ()) -> int:
        """Send a request now and return its id; ``reply(id)`` waits for its answer. Sending to
        several nodes before waiting on any puts the work of all of them in flight at once.
        """
        return self._io.send(msg, body, buffers)

    def reply(self, msg_id: int, timeout: float | None = None) -> tuple[Any, list[Any]]:
        """The reply to a request made with ``send`` (the node's error raised)."""
        return self._io.wait(msg_id, timeout or self.timeout)

    def _send(self, msg: str | schema.Body, body: Any = None, buffers: list[Any] | tuple[Any, ...] = ()) -> int:
        """Send without waiting for the reply (it is dropped when it comes)."""
        return self._io.send(msg, body, buffers, noreply=True)

    def free(self, obj_id: str) -> None:
        """Note that a pointer was dropped; freed ids go to the node in one message with the
        next call (or once 256 have gathered), never blocking.
        """
        self._io.session.freed.append(obj_id)
        if len(self._io.session.freed) >= 256:
            self._io.flush_freed(block=False)

    def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float | None) -> dict[str, Any] | None:
        """Block until the node pushes an event that ``match``es (or ``timeout`` passes: None)."""
        return self._io.wait_event(match, timeout)

    def watch(self, timeout: float) -> list[dict[str, Any]]:
        """Every event pushed since the last ``watch`` (they stay for ``wait_event`` too), waiting
        up to ``timeout`` for one: what a live view listens with, on this same connection.
        """
        return self._io.watch(timeout)

    def unwatch(self) -> None:
        """No live view listens any more: stop keeping events for ``watch``."""
        self._io.unwatch()

    def discard_events(self, request_id: str) -> None:
        """Forget queued events about a request that is settled."""
        with self._io._cond:
            self._io.session.discard_events(request_id)

    @property
    def aio(self) -> AsyncClient:
        """An ``AsyncClient`` for this user on this node (its own connection, made on first use,
        run on the process's background event loop by ``aio.run_sync``).
        """
        if self._aio is None:
            self._aio = run_sync(AsyncClient(self.connection, self.key, self.timeout, self.address).connect())
        return self._aio

    @property
    def node_label(self) -> str:
        """The node's name, for messages."""
        return getattr(self, "node_name", None) or str(self.connection.get("name", "the node"))

    # ---- conveniences
    def batch(self) -> Any:
        """``with client.batch():`` records pointer ops and sends them as one plan at the end."""
        from .batch import batch

        return batch(self)

    def stats(self) -> Stats:
        """The node's counters for this user (and for the whole node, for owners)."""
        return Stats(self.call(schema.NodeStats())[0])

    @property
    def audit(self) -> AuditLog:
        """The node's audit log, newest first; ``client.audit(action=…, user=…, target=…,
        since=…)`` filters it (owners only).
        """
        if self.role != "owner":  # said here, not when the log is first printed (the node refuses too)
            raise Unauthorized(f"audit.list is for data owners; {self.user} is a {self.role}")
        return AuditLog(self)

    @property
    def closed(self) -> bool:
        """Whether this connection is closed."""
        return self._io.closed

    def close(self) -> None:
        """Free dropped pointers and close the connection (and the async one, if made)."""
        if self._aio is not None:
            run_sync(self._aio.close())
            self._aio = None
        self._io.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<syft_kernel.Client {self.user} ({self.role}) on {self.node_name} via {self.address}>"


def login(
    connection: str | os.PathLike[str] | dict[str, Any],
    key: str | os.PathLike[str] | KeyPair,
    timeout: float = DEFAULT_TIMEOUT,
    transport: str | None = None,
) -> Client:
    """Connect to a node as the holder of ``key``.

    ``connection`` is a connection file (or its dict); ``key`` a key file from ``syft-kernel
    keygen`` (or ``node init`` for the owner). ``transport="tcp"`` forces TCP over ``ipc://``.
    """
    info, pair, address = resolve_login(connection, key, transport)
    client = Client(info, pair, timeout=timeout, address=address)
    if not isinstance(connection, dict):  # where the node lives: a view can tell a deleted node from a stopped one
        client.connection_path = Path(connection)
    if not isinstance(key, KeyPair):  # where the key is, so a resumed federated job can log in again
        client.key_path = Path(key).resolve()
    return client
