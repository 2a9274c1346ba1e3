"""The sync client's socket: one DEALER shared by every thread of the process, no I/O thread.

A call sends at once and then waits for its own reply. Whichever waiting thread finds nobody
reading becomes the reader: it receives every message that arrives (replies for the others,
events) and hands each to its waiter; the rest sleep on a condition. So calls from a cell, a
widget's watcher and a batch over several nodes are all in flight together, and a lone call
costs what a plain send and receive costs: no thread hop. Every zmq call on the socket is made
under one lock (zmq sockets are not thread-safe); waiting for data is done on the socket's file
descriptor outside it, so a sender is never held up by a reader.
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import zmq

from .core import codec, schema
from .core.errors import AuthenticationError, NodeUnavailable, SyftError
from .core.keys import KeyPair
from .protocol import Reply, Session

FEED_MAX = 1024  # events kept for a watcher that has not looked (older ones are dropped)
SOLO_SLICE = 0.005  # … and the longest a lone reader holds the socket while it waits
SEND_TIMEOUT = 60.0  # longest a send waits for the node to take the message
SLICE = 0.05  # longest sleep on the descriptor before the reader looks again (an edge it missed)
_NOTHING = object()


class Transport:
    """Requests and replies by message id over one CURVE DEALER, safe to use from any thread."""

    def __init__(self, connection: dict[str, Any], key: KeyPair, address: str, label: str) -> None:
        self.connection, self.key, self.address, self.label = connection, key, address, label
        self.session = Session()
        self.round_trips = 0
        self._io = threading.Lock()  # every zmq call on the socket
        self._cond = threading.Condition()  # replies, events and the reader's role
        self._replies: dict[int, Reply | SyftError] = {}
        self._waiting: set[int] = set()
        self._reading = False
        self._feed: collections.deque[dict[str, Any]] | None = None  # events for a watcher, when one listens
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        ctx: zmq.Context[Any] = zmq.Context.instance()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = connection["node_public_key"].encode()
        self.sock.curve_publickey = key.public.encode()
        self.sock.curve_secretkey = key.secret.encode()  # type: ignore[union-attr]
        self.sock.linger = 0
        self._monitor: zmq.Socket[Any] | None = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        self.sock.connect(address)

    # ---- sending
    def send(
        self,
        msg: str | schema.Body,
        body: Any = None,
        buffers: Sequence[Any] = (),
        noreply: bool = False,
        timeout: float = SEND_TIMEOUT,
    ) -> int:
        """Send one message now; its reply (unless ``noreply``) is kept for ``wait``. A send that
        cannot go out (no connection yet, the node's queue full) waits up to ``timeout``; a key
        the node refuses is reported at once."""
        deadline = time.monotonic() + timeout
        with self._io:
            if self.sock.closed:
                raise NodeUnavailable(f"this connection to {self.label} is closed: log in again (sk.login(…))")
            msg_id, frames = self.session.frames(msg, body, buffers, noreply)
        if not noreply:
            with self._cond:
                self._waiting.add(msg_id)
        try:
            while True:
                with self._io:
                    if self.sock.closed:
                        raise NodeUnavailable(f"this connection to {self.label} is closed: log in again (sk.login(…))")
                    try:
                        self.sock.send_multipart(frames, zmq.NOBLOCK, copy=codec.copy_cheaper(frames))
                    except zmq.Again:
                        if self._monitor is not None:  # a refused handshake leaves no peer to send to
                            self._check_handshake()
                        if time.monotonic() >= deadline:
                            raise NodeUnavailable(
                                f"{self.label} took no message for {timeout:.0f}s: it may be down or overloaded"
                            ) from None
                        self.sock.poll(SOLO_SLICE * 1000, zmq.POLLOUT)
                        continue
                    incoming = self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
                    break
        except BaseException:
            with self._cond:
                self._waiting.discard(msg_id)
            raise
        if not noreply:
            self.round_trips += 1
        if incoming:  # the send may have taken the descriptor's edge: wake the reader
            self._wake()
        return msg_id

    def flush_freed(self, block: bool = True) -> None:
        """Free the dropped pointers in one no-reply message (``block=False``: only if the socket is free)."""
        if not self._io.acquire(blocking=block):
            return
        try:
            frames = self.session.free_frames()
            if frames is not None and not self.sock.closed:
                try:
                    self.sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.ZMQError:  # the node is gone or not keeping up: it frees them at restart anyway
                    pass
        finally:
            self._io.release()

    # ---- waiting
    def wait(self, msg_id: int, timeout: float) -> Reply:
        """The reply to ``msg_id`` (its error raised), reading for everyone while nobody else does."""
        result = self._until(lambda: self._replies.pop(msg_id, _NOTHING), time.monotonic() + timeout)
        with self._cond:
            self._waiting.discard(msg_id)
        if result is _NOTHING:
            raise NodeUnavailable(f"{self.label} did not reply within {timeout:.0f}s; it may be busy or down")
        if isinstance(result, SyftError):
            try:
                raise result
            finally:  # no cycle (this frame <-> the traceback) keeping the caller's pointers alive
                del result
        return cast(Reply, result)

    def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float | None) -> dict[str, Any] | None:
        """The first pushed event that ``match``es (kept ones first), or None after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        found = self._until(lambda: self.session.take_event(match) or _NOTHING, deadline)
        return None if found is _NOTHING else cast("dict[str, Any]", found)

    def watch(self, timeout: float) -> list[dict[str, Any]]:
        """Every event pushed since the last call (each also stays for ``wait_event``), waiting up
        to ``timeout`` for one: for a live view that must not take events others wait for."""
        with self._cond:
            if self._feed is None:
                self._feed = collections.deque(maxlen=FEED_MAX)

        def take() -> Any:
            if not self._feed:  # empty, or the watcher stopped meanwhile
                return _NOTHING
            out = list(self._feed)
            self._feed.clear()
            return out

        got = self._until(take, time.monotonic() + timeout)
        return [] if got is _NOTHING else cast("list[dict[str, Any]]", got)

    def unwatch(self) -> None:
        """The watcher is gone: stop keeping events for it."""
        with self._cond:
            self._feed = None

    def _until(self, check: Callable[[], Any], deadline: float | None) -> Any:
        """Run ``check`` (under the condition) until it gives something or ``deadline`` passes;
        meanwhile read the socket if no other thread is reading it."""
        while True:
            with self._cond:
                while True:
                    found = check()
                    if found is not _NOTHING:
                        return found
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return _NOTHING
                    if not self._reading:
                        self._reading = True
                        break
                    self._cond.wait(SLICE if left is None else min(left, SLICE))
            try:
                self._read(SLICE if left is None else min(left, SLICE))
            finally:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()

    def _read(self, timeout: float) -> None:
        """Receive what has arrived, or sleep on the descriptor until something may have."""
        with self._io:
            if self.sock.closed:
                raise NodeUnavailable(f"this connection to {self.label} is closed: log in again (sk.login(…))")
            if self._monitor is not None:
                self._check_handshake()
            got = self._drain()
            if not got and self._feed is None and len(self._waiting) <= 1:
                # alone (one call, no watcher): wait on the socket itself, as a plain client does,
                # in short slices so a thread that comes to send is let in soon
                if self.sock.poll(min(timeout, SOLO_SLICE) * 1000):
                    self._drain()
                return
            fd = self.sock.getsockopt(zmq.FD)
        if got:
            return
        watched = [fd, self._wake_r] + ([self._monitor.getsockopt(zmq.FD)] if self._monitor is not None else [])
        try:
            ready, _, _ = select.select(watched, [], [], timeout)
        except (OSError, ValueError):  # the socket was closed meanwhile (by another thread)
            if self.sock.closed:
                raise NodeUnavailable(
                    f"this connection to {self.label} is closed: log in again (sk.login(…))"
                ) from None
            raise
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    def _drain(self) -> bool:
        """Every message waiting on the socket, handed out (called under ``_io``)."""
        got = False
        while self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            msg_id, result = self.session.read(frames)
            with self._cond:
                if msg_id is None:
                    if self._feed is not None and isinstance(result, dict):
                        self._feed.append(result)
                elif msg_id in self._waiting:
                    self._replies[msg_id] = result  # type: ignore[assignment]
                # else: a late reply to a call that timed out earlier
            got = True
        return got

    def _check_handshake(self) -> None:
        """During the first hello: a key the node refuses fails at once, not at the timeout."""
        from zmq.utils.monitor import recv_monitor_message

        assert self._monitor is not None
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                raise AuthenticationError(
                    f"{self.connection.get('name', 'the node')} refused the key {self.key.public[:8]}…: "
                    "ask the data owner to add you (owner.users.add(name, role=…, public_key=…)) "
                    "and check that the connection file is this node's"
                )

    def stop_monitor(self) -> None:
        with self._io:
            if self._monitor is not None:
                if not self.sock.closed:
                    self.sock.disable_monitor()
                self._monitor.close(linger=0)
                self._monitor = None

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # ---- closing
    @property
    def closed(self) -> bool:
        return bool(self.sock.closed)

    def close(self) -> None:
        self.flush_freed()
        self.stop_monitor()
        with self._io:
            if not self.sock.closed:
                self.sock.close(linger=0)
        self._wake()
        with self._cond:
            self._cond.notify_all()

    def __del__(self) -> None:
        for fd in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
