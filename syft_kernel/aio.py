"""The async core of the client: one DEALER socket per node on ``zmq.asyncio``, many requests in
flight on it at once, replies matched to their request by message id.

``AsyncClient`` is for code that already runs an event loop. ``Client`` (``client.py``) is its
sync facade: it runs every ``AsyncClient`` of the process on one background event loop
(``io_loop``), so it works from plain scripts, from threads and inside a Jupyter kernel whose own
loop is already running. Events the node pushes (a request decided, a budget changed) arrive on
the same socket and are kept for ``wait_event`` and handed to subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from .core import codec, schema
from .core.errors import (
    AuthenticationError,
    CompositeError,
    InvalidArgument,
    NodeUnavailable,
    SyftError,
)
from .core.keys import KeyPair, read_connection_file, read_keypair
from .protocol import Session, require_secret

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = 60.0
MAX_IN_FLIGHT = 64  # requests one AsyncClient has on the wire at once (the node queues 128 per connection)
FREE_BATCH = 256  # dropped pointers gathered before they are freed in a message of their own
T = TypeVar("T")
Listener = Callable[[dict[str, Any]], None]


class AsyncClient:
    """A logged-in user on one node, for ``async`` code. Make one with ``await connect(…)``."""

    def __init__(
        self, connection: dict[str, Any], key: KeyPair, timeout: float = DEFAULT_TIMEOUT, address: str | None = None
    ) -> None:
        require_secret(key)
        self.connection = connection
        self.key = key
        self.timeout = timeout
        self.address = address or pick_address(connection)
        self.node_name: str = str(connection.get("name", "the node"))
        self.user = ""
        self.role = ""
        self.round_trips = 0
        self.session = Session()
        self._pending: dict[int, Any] = {}  # message id -> the future its reply completes
        self._window: asyncio.Semaphore | None = None  # made on the loop that first calls
        self._event_arrived: asyncio.Event | None = None
        self._listeners: list[Listener] = []
        self._reader: asyncio.Task[None] | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._closed = False

    # ---- connecting
    async def connect(self) -> AsyncClient:
        """Connect and say hello, watching the handshake so a refused key fails fast and clearly."""
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.curve_serverkey = self.connection["node_public_key"].encode()
        sock.curve_publickey = self.key.public.encode()
        sock.curve_secretkey = self.key.secret.encode()  # type: ignore[union-attr]
        sock.linger = 0
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        sock.connect(self.address)
        self._sock = sock
        self._event_arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())
        watch = asyncio.ensure_future(_refused(monitor))
        hello = asyncio.ensure_future(self.call(schema.Hello()))
        try:
            done, _ = await asyncio.wait({hello, watch}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                raise AuthenticationError(
                    f"{self.connection.get('name', 'the node')} refused the key {self.key.public[:8]}…: "
                    "ask the data owner to add you (owner.users.add(name, role=…, public_key=…)) "
                    "and check that the connection file is this node's"
                )
            if hello not in done:
                raise NodeUnavailable(
                    f"{self.connection.get('name', 'the node')} at {self.address} did not answer in "
                    f"{self.timeout:.0f}s: is it running (`syft-kernel node serve DIR`)?"
                )
            body, _ = hello.result()
        except BaseException:
            hello.cancel()
            await self.close()
            raise
        finally:
            watch.cancel()
            if not sock.closed:
                sock.disable_monitor()
            monitor.close(linger=0)
        self.node_name, self.user, self.role = body["node"], body["user"], body["role"]
        return self

    # ---- messaging
    def send(self, msg: str | schema.Body, body: Any = None, buffers: Sequence[Any] = (), noreply: bool = False) -> int:
        """Send one message now (it is queued on the socket at once) and return its id."""
        if self._sock is None or self._closed:
            raise NodeUnavailable(f"this connection to {self.node_label} is closed: log in again (sk.login(…))")
        msg_id, frames = self.session.frames(msg, body, buffers, noreply)
        self._sock.send_multipart(frames, copy=codec.copy_cheaper(frames))
        return msg_id

    async def call(
        self, msg: str | schema.Body, body: Any = None, buffers: Sequence[Any] = (), timeout: float | None = None
    ) -> tuple[Any, list[Any]]:
        """One request and its reply; other calls may be in flight on the same socket meanwhile.
        Raises the node's error as a ``SyftError``.
        """
        if self._window is None:
            self._window = asyncio.Semaphore(MAX_IN_FLIGHT)
        async with self._window:  # the node lets one connection have 128 messages waiting
            future: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()
            self.start_call(future, msg, body, buffers, timeout)
            return await future

    def start_call(
        self,
        future: Any,
        msg: str | schema.Body,
        body: Any = None,
        buffers: Sequence[Any] = (),
        timeout: float | None = None,
    ) -> None:
        """Send a request whose reply (or error, or timeout) completes ``future`` (an asyncio or a
        ``concurrent.futures`` future). Runs on the event loop; the sync facade calls it there.
        """
        try:
            msg_id = self.send(msg, body, buffers)
        except BaseException as e:
            future.set_exception(e)
            return
        self._pending[msg_id] = future
        self.round_trips += 1
        limit = timeout or self.timeout
        timer = asyncio.get_running_loop().call_later(limit, self._expire, msg_id, limit)

        def done(_: Any) -> None:
            timer.cancel()
            self._pending.pop(msg_id, None)

        future.add_done_callback(done)

    def _expire(self, msg_id: int, limit: float) -> None:
        future = self._pending.pop(msg_id, None)
        if future is not None and not future.done():
            future.set_exception(
                NodeUnavailable(f"{self.node_label} did not reply within {limit:.0f}s; it may be busy or down")
            )

    async def _read(self) -> None:
        """The one reader of the socket: replies go to their call, events to the event queue."""
        assert self._sock is not None
        while True:
            try:
                frames = await self._sock.recv_multipart(copy=False)
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            try:
                self._dispatch(frames)
            except Exception:  # a malformed reply fails its call, never the reader
                log.exception("unreadable message from %s", self.node_label)

    def _dispatch(self, frames: list[zmq.Frame]) -> None:
        msg_id, result = self.session.read(frames)
        if msg_id is None:
            if isinstance(result, dict):  # an event
                assert self._event_arrived is not None
                self._event_arrived.set()
                for listener in list(self._listeners):
                    try:
                        listener(result)
                    except Exception:  # one broken listener must not stop the others
                        log.exception("an event listener failed on %s", result.get("event"))
            return
        future = self._pending.get(msg_id)
        if future is None or future.done():
            return  # a late reply to a call that timed out earlier (or was cancelled)
        if isinstance(result, SyftError):
            future.set_exception(result)
        else:
            future.set_result(result)

    def free(self, obj_id: str) -> None:
        """Note that a pointer was dropped: freed with the next call, or in one message per 256."""
        self.session.freed.append(obj_id)
        if len(self.session.freed) >= FREE_BATCH:
            self.flush_freed()

    def flush_freed(self) -> None:
        """Free every dropped pointer now, in one no-reply message."""
        frames = self.session.free_frames()
        if frames is not None and self._sock is not None and not self._closed:
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError:  # the node is gone or not keeping up: it frees them at restart anyway
                pass

    # ---- events
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` (on the event loop) for every event the node pushes; returns
        the function that unsubscribes it.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float | None) -> dict[str, Any] | None:
        """The first pushed event that ``match``es (kept ones first), or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        assert self._event_arrived is not None
        while True:
            event = self.session.take_event(match)
            if event is not None:
                return event
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return None
            self._event_arrived.clear()
            try:
                await asyncio.wait_for(self._event_arrived.wait(), left)
            except asyncio.TimeoutError:
                return None

    def discard_events(self, request_id: str) -> None:
        """Forget queued events about a request that is settled."""
        self.session.discard_events(request_id)

    # ---- the rest
    @property
    def node_label(self) -> str:
        """The node's name, for messages."""
        return self.node_name

    @property
    def closed(self) -> bool:
        """Whether this connection is closed."""
        return self._closed or self._sock is None or self._sock.closed

    async def close(self) -> None:
        """Free dropped pointers, fail the calls still waiting and close the socket."""
        if self._closed:
            return
        self.flush_freed()
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NodeUnavailable(f"the connection to {self.node_label} was closed"))
        if self._sock is not None:
            self._sock.close(linger=0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<syft_kernel.AsyncClient {self.user} ({self.role}) on {self.node_name} via {self.address}>"


async def _refused(monitor: zmq.asyncio.Socket) -> None:
    """Returns when the handshake of the monitored socket is refused (a key the node does not know)."""
    from zmq.utils.monitor import parse_monitor_message

    while True:
        event = parse_monitor_message(await monitor.recv_multipart())["event"]
        if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
            return


def pick_address(connection: dict[str, Any]) -> str:
    """``ipc://`` when the node runs on this host and its socket file exists, else the first TCP address."""
    addresses = [str(a) for a in connection["addresses"]]
    same_host = connection.get("hostname") in (None, os.uname().nodename)
    for a in addresses:
        if a.startswith("ipc://") and same_host and os.path.exists(a[len("ipc://") :]):
            return a
    for a in addresses:
        if not a.startswith("ipc://"):
            return a
    return addresses[0]


def resolve_login(
    connection: str | os.PathLike[str] | dict[str, Any],
    key: str | os.PathLike[str] | KeyPair,
    transport: str | None = None,
) -> tuple[dict[str, Any], KeyPair, str | None]:
    """The connection info, the key pair and the forced address (``transport="tcp"``) of a login."""
    info = connection if isinstance(connection, dict) else read_connection_file(connection)
    if info.get("kind") == "gateway":
        raise InvalidArgument(
            "that is a gateway's connection file, not a node's: search it with sk.connect_network(path, key=…)"
        )
    pair = key if isinstance(key, KeyPair) else read_keypair(Path(key))
    address = next(a for a in info["addresses"] if a.startswith("tcp://")) if transport == "tcp" else None
    return info, pair, address


async def connect(
    connection: str | os.PathLike[str] | dict[str, Any],
    key: str | os.PathLike[str] | KeyPair,
    timeout: float = DEFAULT_TIMEOUT,
    transport: str | None = None,
) -> AsyncClient:
    """``await connect(connection_file, key=…)``: an ``AsyncClient`` logged in to that node."""
    info, pair, address = resolve_login(connection, key, transport)
    return await AsyncClient(info, pair, timeout=timeout, address=address).connect()


async def gather_nodes(calls: Iterable[tuple[str, Awaitable[T]]]) -> list[T]:
    """Await work on several nodes at once. One failure is raised as itself; failures on several
    nodes come back as one ``CompositeError`` that names each node.
    """
    named = list(calls)
    results = await asyncio.gather(*(c for _, c in named), return_exceptions=True)
    errors = {name: r for (name, _), r in zip(named, results) if isinstance(r, BaseException)}
    if len(errors) == 1:
        raise next(iter(errors.values()))
    if errors:
        syft = {k: v if isinstance(v, SyftError) else SyftError(f"{type(v).__name__}: {v}") for k, v in errors.items()}
        raise CompositeError(syft)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------- the loop the sync facade runs on

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop (one daemon thread) that every ``Client`` runs on."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="syft-kernel-io", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def on_io_loop() -> bool:
    """Whether the caller runs on the background loop itself (a sync call there would deadlock)."""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for it here (any thread, any running loop)."""
    if on_io_loop():
        coro.close()
        raise RuntimeError("a sync syft_kernel call was made from its own event loop: await the AsyncClient instead")
    return asyncio.run_coroutine_threadsafe(coro, io_loop()).result(timeout)


def call_soon(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on the background loop without waiting (e.g. a send that needs no reply)."""
    io_loop().call_soon_threadsafe(fn, *args)
