"""The ZeroMQ server loop: a ROUTER socket with CURVE on, keys checked by a ZAP handler.

The ZAP handler admits only public keys registered in the node's database; the User-Id it sets
(the Z85 public key) is what identifies the sender of every message, never the header. Every
message gets exactly one reply (unless it asked for none); a message the node cannot read gets
an error reply and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from syft_kernel.core import codec
from syft_kernel.core.errors import ProtocolError, QuotaExceeded, SyftError, Unauthorized
from syft_kernel.core.keys import read_keypair, write_connection_file
from syft_kernel.core.procs import pid_alive

from . import dispatch
from .config import NodeConfig
from .handlers import Later
from .limits import limit_address_space
from .state import DataNode
from .workqueue import WorkQueue

log = logging.getLogger("syft_kernel.node")

ZAP_DOMAIN = "syft"
DEFAULT_MAX_MESSAGE = 16 * 1024**3  # libzmq drops a peer that sends a bigger frame (see limits.py)
HANDOFF_S = 0.01  # a leader busy this long hands receiving to another thread


# what a node close to its memory limit still answers: nothing that makes new values
LOW_MEMORY_ALLOWED = frozenset(
    {
        "hello",
        "del",
        "node.stats",
        "objects.describe",
        "datasets.list",
        "datasets.get",
        "requests.list",
        "requests.get",
        "budgets.get",
        "audit.list",
        "users.list",
        "network.status",
        "network.leave",
    }
)


def _address_space(page: int) -> int:
    """This process's virtual size in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * page


def _peek_header(frames: list[zmq.Frame]) -> dict[str, Any]:
    """The header of a message that is refused before it is read, for its reply's id."""
    try:
        header = codec.unpack_header(frames[1])
        return header if isinstance(header, dict) else {}
    except Exception:
        return {}


class _KeyCheck:
    """ZAP credentials provider: a key may connect only if a user holds it."""

    def __init__(self, node: DataNode) -> None:
        self.node = node

    def callback(self, domain: str, key: bytes) -> bool:
        ok = self.node.key_allowed(key.decode("ascii"))
        if not ok:
            log.warning("refused a connection from an unknown key %s…", key[:8].decode("ascii", "replace"))
        return ok


class NodeServer:
    """Serves one node folder on TCP (and ``ipc://`` for clients on the same host)."""

    def __init__(
        self,
        folder: str | Path,
        host: str | None = None,
        port: int | None = None,
        ipc: bool | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        parent_pid: int | None = None,
        argv: Sequence[str] = (),
    ) -> None:
        self.folder = Path(folder)
        self.config = NodeConfig.load(self.folder, argv, host=host, port=port, ipc=ipc)
        self.host, self.port, self.use_ipc = self.config.host, self.config.port, self.config.ipc
        self._closing = False
        self.memory_limit = 1 << 62
        self._wake = -1
        self.node = DataNode(self.folder, self.config)
        limits = self.node.limits
        self.max_message_bytes = min(max_message_bytes, limits.max_message_mb * 2**20)
        self.workers, self.per_user, self.per_connection = limits.workers, limits.per_user, limits.per_connection
        self.keys = read_keypair(self.folder / "keys" / "node.key")
        self._stop = threading.Event()
        self.addresses: list[str] = []
        self.parent_pid = parent_pid
        self.identities: dict[str, dict[bytes, float]] = {}  # user → connected DEALER identities
        self._dropped, self._dropped_said = 0, -1e9  # replies a client did not read

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        self._stop.set()

    def _ipc_path(self) -> str | None:
        path = self.folder / "node.ipc"
        if len(str(path.resolve())) > 100:  # sun_path is ~107 bytes
            return None
        return str(path.resolve())

    def serve(self) -> None:
        memory = self.memory_limit = limit_address_space(self.node.limits)
        log.info("node memory limit %.1f GiB (NodeConfig.memory_mb)", memory / 2**30)
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("syft_kernel.node.zap"))
        auth.start()
        auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_KeyCheck(self.node))
        sock = ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = self.keys.secret.encode()
        sock.curve_publickey = self.keys.public.encode()
        sock.zap_domain = ZAP_DOMAIN.encode()
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.linger = 1000
        try:
            if self.port:
                sock.bind(f"tcp://{self.host}:{self.port}")
                tcp = f"tcp://{self.host}:{self.port}"
            else:
                port = sock.bind_to_random_port(f"tcp://{self.host}")
                tcp = f"tcp://{self.host}:{port}"
            self.addresses = [tcp]
            ipc_path = self._ipc_path() if self.use_ipc else None
            if ipc_path:
                if os.path.exists(ipc_path):
                    os.unlink(ipc_path)
                sock.bind(f"ipc://{ipc_path}")
                os.chmod(ipc_path, 0o666)  # local users may connect; CURVE decides who gets in
                self.addresses.insert(0, f"ipc://{ipc_path}")
            self._write_connection()
            self.node.network.addresses = [a for a in self.addresses if a.startswith("tcp://")]
            if self.node.network.membership is not None:
                self.node.network.start()  # back on the network it belongs to
            log.info(
                "node %s serving on %s (CURVE on; %d user(s))",
                self.node.name,
                ", ".join(self.addresses),
                len(self.node.db.users()),
            )
            self._loop(sock)
        finally:
            log.info("node %s shutting down", self.node.name)
            self.node.network.stop()
            if self.node._fl is not None:  # trainers end with the node (they die with it anyway)
                self.node._fl.close()
            sock.close(linger=500)
            auth.stop()
            ctx.term()
            self.node.db.close()
            try:
                if getattr(self, "addresses", None):  # only a node that got to serve wrote its pid
                    self._write_connection(running=False)
            except OSError as e:  # a read-only folder: the stale pid is checked by whoever reads it
                log.warning("could not mark the connection file stopped: %s", e)
            if self.use_ipc and (p := self._ipc_path()) and os.path.exists(p):
                os.unlink(p)
            log.info("node %s stopped", self.node.name)

    def _write_connection(self, running: bool = True) -> None:
        """The connection file; while serving it carries the server's pid (how launchers and the
        dashboard know the node is up), and a clean stop removes it."""
        info = {
            "name": self.node.name,
            "addresses": self.addresses,
            "node_public_key": self.keys.public,
            "protocol_version": codec.PROTOCOL_VERSION,
            "hostname": os.uname().nodename,
            **({"pid": os.getpid()} if running else {}),
        }
        write_connection_file(self.folder / "connection.json", info)

    # ---- the loop: leader / followers --------------------------------------------------------
    # A pool of threads shares the ROUTER socket, one at a time, under ``_sock_lock`` (a mutex is
    # the full memory barrier libzmq asks for when a socket moves between threads). One thread, the
    # leader, receives; it handles what it receives itself, so a reply costs no thread switch. If
    # its handler runs longer than ``HANDOFF_S``, the supervisor hands the leading to a follower,
    # so a slow operation never stops the node from receiving: the other threads go on serving.

    def _loop(self, sock: zmq.Socket) -> None:
        self._sock = sock
        self._sock_lock = threading.Lock()
        self._lead = threading.Condition()
        self._leader: int | None = None  # the thread that receives now
        self._busy_since: float | None = None  # when the leader started handling a message
        self._fd = sock.getsockopt(zmq.FD)
        self._wake_r, self._wake = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake, False)  # a full pipe means the leader is waking anyway
        self.work = WorkQueue(self.workers, self.per_user, self.per_connection, self.node.limits.max_queued_mb * 2**20)
        self.node.on_event = self._wake_leader  # events from job threads go out at once too
        # one thread more than may run handlers: someone is always free to receive
        threads = [
            threading.Thread(target=self._serve_forever, name=f"node-worker-{i}", daemon=True)
            for i in range(self.workers + 1)
        ]
        for t in threads:
            t.start()
        last_check = time.monotonic()
        headroom = max(512 * 2**20, self.memory_limit // 10)
        page = os.sysconf("SC_PAGE_SIZE")
        ticks = 0
        try:
            while not self._stop.wait(HANDOFF_S):
                ticks += 1
                if ticks % 5 == 0:  # admission: near the address-space limit, take no new work
                    self.node.memory_low = _address_space(page) > self.memory_limit - headroom
                since = self._busy_since
                if since is not None and time.monotonic() - since > HANDOFF_S:
                    with self._lead:  # the leader is busy: let a follower receive meanwhile
                        if self._busy_since == since:
                            self._leader, self._busy_since = None, None
                            self._lead.notify()
                if self.parent_pid and time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if not pid_alive(self.parent_pid):
                        log.info("the process that started this node (pid %d) has gone; stopping", self.parent_pid)
                        break
        finally:
            self._stop.set()
            with self._lead:
                self._lead.notify_all()
            self._wake_leader()
            deadline = time.monotonic() + 2.0
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            got = self._sock_lock.acquire(timeout=2.0)  # a handler still running past the deadline
            self._closing = True  # never sends again (and a stuck holder cannot keep the node up)
            if got:
                self._sock_lock.release()
            os.close(self._wake_r)
            os.close(self._wake)

    def _serve_forever(self) -> None:
        """One worker: run work that may start, else lead (receive, and handle what comes)."""
        me = threading.get_ident()
        poller = zmq.Poller()  # only a leader polls; each thread keeps its own
        poller.register(self._fd, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stop.is_set():
            job = self.work.take()
            if job is None:
                if self._leader != me:
                    with self._lead:
                        while self._leader not in (None, me) and not self._stop.is_set():
                            self._lead.wait()
                        self._leader = me
                job = self._wait_for_work(poller)
                if job is None:
                    continue
            # plain attribute reads and writes (atomic under the GIL): if the supervisor demotes
            # this leader in between, the worst case is one wake-up that waits for its poll timeout
            leading = self._leader == me
            if leading:
                self._busy_since = time.monotonic()
            connection, name, (frames, user) = job
            # a leader receives next anyway; another thread must tell the leader what is waiting
            pending = self._run(connection, name, frames, user, check_pending=not leading)
            if leading:
                if self._leader == me:
                    self._busy_since = None
                else:  # demoted meanwhile: the new leader (whose watch is its own) may need the news
                    pending = self._pending()
            if pending and self._leader != me:  # our send may have swallowed the edge it sleeps on
                self._wake_leader()

    def _wait_for_work(self, poller: zmq.Poller) -> tuple[bytes, Any, Any] | None:
        """As the leader: receive until some message may run (or the node stops)."""
        while not self._stop.is_set():
            job = self.work.take()
            if job is not None:
                return job
            with self._sock_lock:
                if self._closing:
                    return None
                received, job = self._receive()
                if not self.node.events.empty():
                    self._push_events()
            if job is not None:
                return job
            if received:
                continue
            # ZMQ_FD is edge-triggered: sleep on it only right after EVENTS said nothing is waiting
            if any(fd == self._wake_r for fd, _ in poller.poll(200)):
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        return None

    def _pending(self) -> bool:
        with self._sock_lock:
            return not self._closing and bool(self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def _run(self, identity: bytes, name: str, frames: list[zmq.Frame], user: Any, check_pending: bool = True) -> bool:
        """Handle one message and send its reply; True if more messages are waiting (when asked)."""
        try:
            out = self._serve_one(frames, user)
        except BaseException:  # the connection must be freed whatever happened
            log.exception("a worker failed to answer a message")
            out = None
        self.work.done(identity, name)
        if isinstance(out, Later):
            later, out = out, None
            later.future.add_done_callback(lambda _: self._send_later(identity, later))
        with self._sock_lock:
            if self._closing:
                return False
            if out:
                self._send(identity, out)
            if not self.node.events.empty():
                self._push_events()
            return check_pending and bool(self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def _wake_leader(self) -> None:
        try:
            os.write(self._wake, b"!")
        except OSError:  # the pipe is full (the leader wakes anyway) or the loop has stopped
            pass

    def _receive(self) -> tuple[int, tuple[bytes, str, Any] | None]:
        """Queue the waiting messages on their connections, refusing at once what cannot be
        queued, until one may run at once: returns how many came, and that one (the caller runs
        it, and receives the rest after). Called under ``_sock_lock``."""
        n = 0
        while n < 1000 and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            identity = frames[0].bytes
            user = self.node.user_for_key(frames[1].get("User-Id")) if len(frames) > 1 else None
            name = user.name if user is not None else ""
            if user is not None:
                seen = self.identities.setdefault(name, {})
                if identity not in seen and len(seen) > 64:
                    seen.pop(min(seen, key=seen.__getitem__))
                seen[identity] = time.monotonic()
            status = self.work.offer(identity, name, (frames, user), sum(len(f) for f in frames[1:]))
            if status == "run":
                return n, (identity, name, (frames, user))
            if status == "refused":
                header = _peek_header(frames)
                body = QuotaExceeded(
                    f"you have too many messages waiting on this node (at most {self.per_connection} "
                    f"per connection and {self.node.limits.max_queued_mb} MB in all): wait for "
                    "their replies before sending more",
                    limit="messages waiting",
                ).to_wire()
                self._send(
                    identity,
                    codec.pack_message({"id": header.get("id"), "type": "reply", "status": "error", "ms": 0.0}, body),
                )
        return n, None

    def _send(self, identity: bytes, out: list[Any]) -> None:
        """Send a reply without ever blocking: a client that does not read its replies (its queue
        at the high-water mark) loses them; it never holds the socket, and so the node, up."""
        try:
            self._sock.send_multipart([identity, *out], flags=zmq.NOBLOCK, copy=codec.copy_cheaper(out))
        except zmq.Again:
            self._dropped += 1
            if time.monotonic() - self._dropped_said > 10.0:  # said once in a while, not once a reply
                log.warning("dropped %d repl(ies) so far: a client is not reading its replies", self._dropped)
                self._dropped_said = time.monotonic()
        except zmq.ZMQError as e:  # the client went away; nothing to do
            log.info("could not reply (%s); the client has gone", e.strerror)

    def _push_events(self) -> None:
        """Send queued events to every connection of their user (owners for ``None``).
        Called under ``_sock_lock``."""
        while True:
            try:
                user, event = self.node.events.get_nowait()
            except Exception:
                return
            if user is None:
                names = [u["name"] for u in self.node.db.users() if u["role"] == "owner"]
            else:
                names = [user]
            frames = codec.pack_message({"id": None, "type": "event"}, event)
            for name in names:
                for identity in list(self.identities.get(name, {})):
                    try:
                        self._sock.send_multipart([identity, *frames], zmq.NOBLOCK)
                    except zmq.ZMQError:  # that connection has gone
                        self.identities[name].pop(identity, None)

    def _free_first(self, user: Any, ids: Any) -> None:
        """Free the objects whose pointers the client dropped before this message, named in its
        header (the client's batched ``del``, at no message of its own; a message never names an
        object the client dropped, as its own pointers are alive while it is sent)."""
        if ids is None:
            return
        if not isinstance(ids, list) or len(ids) > 4096 or not all(isinstance(i, str) for i in ids):
            raise ProtocolError("the header's free is a list of at most 4096 object ids")
        self.node.store.delete(ids, user.name, user.is_owner)

    def _serve_one(self, frames: list[zmq.Frame], user: Any = None) -> list[Any] | Later | None:
        """Handle one message (on a worker thread); return the reply's frames, or None when the
        message asked for no reply."""
        started = time.perf_counter()
        header: dict[str, Any] = {}
        try:
            if len(frames) < 3:
                raise ProtocolError(f"a message has a header and a body frame; got {len(frames) - 1} frame(s)")
            if len(frames) > codec.MAX_BUFFERS + 3:
                raise ProtocolError(
                    f"a message carries at most {codec.MAX_BUFFERS} buffer frames; got {len(frames) - 3}"
                )
            if sum(len(f) for f in frames[1:]) > self.max_message_bytes:
                raise ProtocolError(f"a message is at most {self.max_message_bytes} bytes in all its frames")
            header = codec.unpack_header(frames[1])
            if user is None:  # (looked up by the loop when it received the message)
                user = self.node.user_for_key(frames[1].get("User-Id"))
            if user is None:
                raise Unauthorized("your key is no longer registered on this node")
            if self.node.memory_low and header["type"] not in LOW_MEMORY_ALLOWED:
                raise QuotaExceeded(
                    "the node is close to its memory limit and takes no new work for now: "
                    "free objects you no longer need (del ptr) and try again",
                    limit="memory",
                )
            body = codec.unpack_body(frames[2])
            self._free_first(user, header.get("free"))
            reply_body, reply_bufs = dispatch.handle(self.node, user, header["type"], body, frames[3:])
            status = "ok"
        except SyftError as e:
            reply_body, reply_bufs, status = e.to_wire(), [], "error"
            log.info("%.100s refused: %s: %.500s", header.get("type", "message"), type(e).__name__, e.message)
        except MemoryError:  # the address-space limit refused an allocation: the node lives on
            reply_body = QuotaExceeded(
                f"{str(header.get('type', 'this message'))[:100]} needed more memory "
                "than the node allows; work on a smaller part of the data",
                limit="memory",
            ).to_wire()
            reply_bufs, status = [], "error"
            log.warning("%.100s refused: out of the node's memory limit", header.get("type", "message"))
        except Exception as e:  # a bug must not take the node down: report it, keep serving
            log.exception("internal error while handling %s", header.get("type", "a message"))
            reply_body = SyftError(f"internal error on the node ({type(e).__name__}); the node keeps serving").to_wire()
            reply_bufs, status = [], "error"
        if isinstance(reply_body, Later):  # the reply comes when its work is done (``_run`` sends it)
            reply_body.frames = lambda: self._frames(header, user, started, *_outcome(reply_body.future))
            return reply_body
        return self._frames(header, user, started, reply_body, reply_bufs, status)

    def _frames(self, header: dict[str, Any], user: Any, started: float, body: Any, bufs: Any, status: str) -> Any:
        if header.get("noreply") and status == "ok":
            return None
        reply_header = {"id": header.get("id", None), "type": "reply", "status": status}
        if user is not None and user.is_owner:  # how long private work took is the owner's to know
            reply_header["ms"] = round((time.perf_counter() - started) * 1000, 3)
        try:
            out = codec.pack_message(reply_header, body, bufs)
        except Exception as e:
            log.exception("could not encode the reply")
            out = codec.pack_message(
                {**reply_header, "status": "error"}, SyftError(f"the result could not be sent: {e}").to_wire()
            )
        return out

    def _send_later(self, identity: bytes, later: Later) -> None:
        """A deferred reply, sent from the thread that finished its work."""
        try:
            out = later.frames()
        except BaseException:
            log.exception("a deferred reply could not be made")
            return
        with self._sock_lock:
            if self._closing or not out:
                return
            self._send(identity, out)
            if not self.node.events.empty():
                self._push_events()
        self._wake_leader()


def _outcome(future: Any) -> tuple[Any, list[Any], str]:
    """A finished deferred reply's body, buffers and status (its error as the wire's error)."""
    try:
        body, bufs = future.result()
        return body, bufs, "ok"
    except SyftError as e:
        return e.to_wire(), [], "error"
    except MemoryError:
        return QuotaExceeded("the work needed more memory than the node allows", limit="memory").to_wire(), [], "error"
    except Exception as e:
        log.error("deferred work failed: %s: %s", type(e).__name__, e)
        return (
            SyftError(f"internal error on the node ({type(e).__name__}); the node keeps serving").to_wire(),
            [],
            "error",
        )


def serve(
    folder: str | Path,
    host: str | None = None,
    port: int | None = None,
    ipc: bool | None = None,
    parent_pid: int | None = None,
    argv: Sequence[str] = (),
) -> None:
    """Serve a node folder until SIGTERM or Ctrl-C (or until ``parent_pid`` exits, if given);
    ``argv`` holds ``--NodeConfig.name=value`` settings."""
    os.umask(0o077)  # every file the node makes (database, objects, logs) is its user's alone
    server = NodeServer(folder, host=host, port=port, ipc=ipc, parent_pid=parent_pid, argv=argv)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve()
