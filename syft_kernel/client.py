"""The connection to one data node: a DEALER socket with CURVE, request / reply by message id.

``login`` reads a connection file and a key file, connects (``ipc://`` when the node is on this
host, else TCP) and says hello; a key the node does not know is reported at once from the
socket's handshake events instead of a silent timeout.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from .core import codec, schema
from .core.errors import AuthenticationError, NodeUnavailable, ProtocolError, from_wire
from .core.keys import KeyPair, read_connection_file, read_keypair

DEFAULT_TIMEOUT = 60.0


class Client:
    """A logged-in user on one node. Use ``login()`` to make one."""

    def __init__(self, connection: dict[str, Any], key: KeyPair, timeout: float = DEFAULT_TIMEOUT,
                 address: str | None = None) -> None:
        if key.secret is None:
            raise AuthenticationError("that key file holds only a public key: log in with NAME.key, not NAME.pub")
        self.connection = connection
        self.key = key
        self.timeout = timeout
        self.address = address or _pick_address(connection)
        self._ctx = zmq.Context.instance()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._freed: list[str] = []
        self._batch: Any = None
        self.last_plan: list[dict[str, Any]] = []
        self.views: dict[str, Any] = {}  # the live widgets shown for this client, one per kind
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=512)
        self._sock, monitor = self._connect()
        self.round_trips = 0
        try:
            hello = self._hello(monitor)
        except BaseException:
            self._sock.close(linger=0)
            raise
        self.node_name: str = hello["node"]
        self.user: str = hello["user"]
        self.role: str = hello["role"]
        from .code import CodeAPI
        from .datasets import DatasetsAPI
        from .dp import Budget, BudgetsAPI
        from .requests import RequestsAPI
        from .users import UsersAPI

        self.datasets = DatasetsAPI(self)
        self.users = UsersAPI(self)
        self.requests = RequestsAPI(self)
        self.code = CodeAPI(self)
        self.budgets = BudgetsAPI(self)
        self.budget = Budget(self)
        self.last_release: dict[str, Any] = {}

    def _connect(self) -> tuple[zmq.Socket, zmq.Socket]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.curve_serverkey = self.connection["node_public_key"].encode()
        sock.curve_publickey = self.key.public.encode()
        sock.curve_secretkey = self.key.secret.encode()  # type: ignore[union-attr]
        sock.linger = 0
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        sock.connect(self.address)
        return sock, monitor

    def _hello(self, monitor: zmq.Socket) -> dict[str, Any]:
        """Say hello while watching the handshake, so a refused key fails fast and clearly."""
        try:
            msg_id = self._send("hello", {})
            deadline = time.monotonic() + self.timeout
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodeUnavailable(
                        f"{self.connection.get('name', 'the node')} at {self.address} did not answer in "
                        f"{self.timeout:.0f}s: is it running (`syft-kernel node serve DIR`)?"
                    )
                ready = dict(poller.poll(min(left, 0.5) * 1000))
                if monitor in ready:
                    from zmq.utils.monitor import recv_monitor_message

                    event = recv_monitor_message(monitor)["event"]
                    if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                        raise AuthenticationError(
                            f"{self.connection.get('name', 'the node')} refused the key {self.key.public[:8]}…: "
                            "ask the data owner to add you (owner.users.add(name, role=…, public_key=…)) "
                            "and check that the connection file is this node's"
                        )
                if self._sock in ready:
                    body, _ = self._recv(msg_id, deadline)
                    return body
        finally:
            if not self._sock.closed:
                self._sock.disable_monitor()
            monitor.close(linger=0)

    # ---- messaging
    def _send(self, msg_type: str, body: Any, buffers: list[Any] | tuple[Any, ...] = (), noreply: bool = False,
              free: list[str] | None = None) -> int:
        msg_id = next(self._ids)
        header: dict[str, Any] = {"id": msg_id, "type": msg_type}
        if noreply:
            header["noreply"] = True
        if free:  # pointers dropped since the last call: no message of their own
            header["free"] = free
        frames = codec.pack_message(header, body, buffers)
        self._sock.send_multipart(frames, copy=codec.copy_cheaper(frames))
        return msg_id

    def _recv(self, msg_id: int, deadline: float) -> tuple[Any, list[Any]]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(left * 1000):
                raise NodeUnavailable(
                    f"{self.node_label} did not reply within {self.timeout:.0f}s; it may be busy or down"
                )
            frames = self._sock.recv_multipart(copy=False)
            if len(frames) < 2:
                raise ProtocolError("the node sent a malformed reply")
            header = codec.unpack_header(frames[0], require_id=False)
            if header.get("type") == "event":
                event = codec.unpack_body(frames[1])
                if isinstance(event, dict):
                    self._events.append(event)
                continue
            if header.get("id") != msg_id:
                continue  # a late reply to a call that timed out earlier
            body = codec.unpack_body(frames[1], limit=2**31)
            if header.get("status") == "error":
                raise from_wire(body if isinstance(body, dict) else {})
            return body, frames[2:]

    def call(self, msg: str | schema.Body, body: Any = None, buffers: list[Any] | tuple[Any, ...] = (),
             timeout: float | None = None) -> tuple[Any, list[Any]]:
        """One request and its reply (thread-safe). ``msg`` is a typed body (``core.schema``) or a
        message type with its ``body`` map. Raises the node's error as a ``SyftError``."""
        if isinstance(msg, schema.Body):
            msg_type, body = msg.TYPE, msg.to_wire()
        else:
            msg_type = msg
        with self._lock:
            if self._sock.closed:
                raise NodeUnavailable(f"this connection to {self.node_label} is closed: log in again (sk.login(…))")
            freed, self._freed = self._freed, []  # the node frees them before it handles this message
            msg_id = self._send(msg_type, {} if body is None else body, buffers, free=freed)
            self.round_trips += 1
            return self._recv(msg_id, time.monotonic() + (timeout or self.timeout))

    def free(self, obj_id: str) -> None:
        """Note that a pointer was dropped; freed ids go to the node in one message with the
        next call (or once 256 have gathered), never blocking."""
        self._freed.append(obj_id)
        if len(self._freed) >= 256 and self._lock.acquire(blocking=False):
            try:
                self._flush_freed()
            finally:
                self._lock.release()

    def _flush_freed(self) -> None:
        ids, self._freed = self._freed, []
        if self._sock.closed:
            return
        header = {"id": next(self._ids), "type": "del", "noreply": True}
        try:
            self._sock.send_multipart(codec.pack_message(header, {"ids": ids}), zmq.NOBLOCK)
        except zmq.ZMQError:  # the node is gone or not keeping up: it frees them at restart anyway
            pass

    def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float | None) -> dict[str, Any] | None:
        """Block until the node pushes an event that ``match``es (or ``timeout`` passes: None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                for event in list(self._events):
                    if match(event):
                        self._events.remove(event)
                        return event
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                if not self._sock.poll(1000 if left is None else min(left, 1.0) * 1000):
                    continue
                frames = self._sock.recv_multipart(copy=False)
                header = codec.unpack_header(frames[0], require_id=False)
                if header.get("type") == "event":
                    event = codec.unpack_body(frames[1])
                    if isinstance(event, dict):
                        self._events.append(event)

    def discard_events(self, request_id: str) -> None:
        """Forget queued events about a request that is settled."""
        with self._lock:
            for event in [e for e in self._events if e.get("request") == request_id]:
                self._events.remove(event)

    @property
    def node_label(self) -> str:
        return getattr(self, "node_name", None) or str(self.connection.get("name", "the node"))

    # ---- conveniences
    def batch(self) -> Any:
        """``with client.batch():`` records pointer ops and sends them as one plan at the end."""
        from .batch import batch

        return batch(self)

    def stats(self) -> dict[str, Any]:
        """The node's counters for this user (and for the whole node, for owners)."""
        return self.call(schema.NodeStats())[0]

    @property
    def audit(self) -> list[dict[str, Any]]:
        """The node's audit log, newest first (owners only)."""
        return self.audit_log()

    def audit_log(self, user: str | None = None, action: str | None = None, target: str | None = None,
                  since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The audit log filtered by user, action (get, release, approve, deny, code.run, …),
        target and time (owners only)."""
        body = schema.AuditList(user=user, action=action, target=target, since=since, limit=limit)
        return self.call(body)[0]["entries"]

    @property
    def closed(self) -> bool:
        return self._sock.closed

    def close(self) -> None:
        with self._lock:
            if self._freed:
                self._flush_freed()
            if not self._sock.closed:
                self._sock.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<syft_kernel.Client {self.user} ({self.role}) on {self.node_name} via {self.address}>"


def _pick_address(connection: dict[str, Any]) -> str:
    """``ipc://`` when the node runs on this host and its socket file exists, else the first TCP address."""
    addresses = [str(a) for a in connection["addresses"]]
    same_host = connection.get("hostname") in (None, os.uname().nodename)
    for a in addresses:
        if a.startswith("ipc://") and same_host and os.path.exists(a[len("ipc://"):]):
            return a
    for a in addresses:
        if not a.startswith("ipc://"):
            return a
    return addresses[0]


def login(connection: str | os.PathLike[str] | dict[str, Any], key: str | os.PathLike[str] | KeyPair,
          timeout: float = DEFAULT_TIMEOUT, transport: str | None = None) -> Client:
    """Connect to a node as the holder of ``key``.

    ``connection`` is a connection file (or its dict); ``key`` a key file from ``syft-kernel
    keygen`` (or ``node init`` for the owner). ``transport="tcp"`` forces TCP over ``ipc://``.
    """
    info = connection if isinstance(connection, dict) else read_connection_file(connection)
    pair = key if isinstance(key, KeyPair) else read_keypair(Path(key))
    address = None
    if transport == "tcp":
        address = next(a for a in info["addresses"] if a.startswith("tcp://"))
    return Client(info, pair, timeout=timeout, address=address)
