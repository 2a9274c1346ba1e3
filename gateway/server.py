"""The gateway's ZeroMQ loop: a ROUTER socket with CURVE on, open to any key.

The gateway holds only public metadata, so any CURVE key may connect and search; the key its
handshake proved (the User-Id) says who sent each message, and a node is only ever the holder of
its registered key. Handlers are quick (an SQLite query), so one thread serves them in turn.
Every message gets one reply; one the gateway cannot read gets an error reply and the loop goes
on.
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
from syft_kernel.core.errors import ProtocolError, SyftError
from syft_kernel.core.keys import write_connection_file
from syft_kernel.core.procs import pid_alive

from . import dispatch
from .config import GatewayConfig
from .folder import connection_info
from .state import Gateway

log = logging.getLogger("syft_kernel.gateway")


class GatewayServer:
    """Serves one gateway folder on TCP until ``stop()``."""

    def __init__(
        self,
        folder: str | Path,
        host: str | None = None,
        port: int | None = None,
        parent_pid: int | None = None,
        argv: Sequence[str] = (),
        **overrides: Any,
    ) -> None:
        self.folder = Path(folder)
        if not (self.folder / "gateway.db").exists():
            raise ProtocolError(f"{self.folder} is not a gateway folder: make one with `syft-kernel gateway init`")
        self.config = GatewayConfig.load(self.folder, argv, host=host, port=port, **overrides)
        self.gateway = Gateway(self.folder, self.config)
        self.parent_pid = parent_pid
        self.addresses: list[str] = []
        self._stop = threading.Event()
        self._identities: dict[str, bytes] = {}  # a node's key → the DEALER identity it last used

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        self._stop.set()

    def serve(self) -> None:
        ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("syft_kernel.gateway.zap"))
        auth.start()
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        sock = ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = self.gateway.keys.secret.encode()  # type: ignore[union-attr]
        sock.curve_publickey = self.gateway.keys.public.encode()
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_mb * 2**20)
        sock.setsockopt(zmq.RCVHWM, self.config.queue_per_connection)  # what one client may park in memory
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.linger = 500
        try:
            host = self.config.host
            if self.config.port:
                sock.bind(f"tcp://{host}:{self.config.port}")
                self.addresses = [f"tcp://{host}:{self.config.port}"]
            else:
                self.addresses = [f"tcp://{host}:{sock.bind_to_random_port(f'tcp://{host}')}"]
            if self.config.public_address:
                self.addresses = [self.config.public_address]
            elif host in ("0.0.0.0", "*", "::", "[::]"):
                log.warning(
                    "serving on %s: no other host can reach %s; set --GatewayConfig.public_address=tcp://HOST:PORT "
                    "to the address they reach this gateway at",
                    host,
                    self.addresses[0],
                )
            self.gateway.db.set_meta("offline_after_s", str(self.config.offline_after_s))  # for `gateway nodes`
            self._write_connection(running=True)
            log.info(
                "gateway %s serving on %s (CURVE on; %d node(s); %s)",
                self.gateway.name,
                ", ".join(self.addresses),
                len(self.gateway.db.nodes()),
                "admitting every node" if self.config.auto_admit else "the operator admits nodes",
            )
            self._loop(sock)
        finally:
            log.info("gateway %s shutting down", self.gateway.name)
            sock.close(linger=500)
            auth.stop()
            ctx.term()
            self.gateway.db.close()
            if self.addresses:
                try:
                    self._write_connection(running=False)
                except OSError as e:
                    log.warning("could not mark the connection file stopped: %s", e)
            log.info("gateway %s stopped", self.gateway.name)

    def _write_connection(self, running: bool) -> None:
        info = connection_info(self.gateway.name, self.addresses, self.gateway.keys.public)
        info["hostname"] = os.uname().nodename
        if running:
            info["pid"] = os.getpid()
        write_connection_file(self.folder / "connection.json", info)

    def _loop(self, sock: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        last_check = time.monotonic()
        while not self._stop.is_set():
            if poller.poll(200):
                for _ in range(1000):  # what is waiting, then a look at the clock
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    out = self._serve_one(frames)
                    if out is not None:
                        self._send(sock, frames[0].bytes, out)
            self._push_events(sock)
            if self.parent_pid and time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if not pid_alive(self.parent_pid):
                    log.info("the process that started this gateway (pid %d) has gone; stopping", self.parent_pid)
                    break

    def _send(self, sock: zmq.Socket[Any], identity: bytes, out: list[Any]) -> None:
        try:
            sock.send_multipart([identity, *out], zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.info("could not reply (%s); the client has gone", e.strerror)

    def _push_events(self, sock: zmq.Socket[Any]) -> None:
        """Events for nodes (an account request waits), sent to the connection each node last used."""
        while True:
            try:
                key, event = self.gateway.events.get_nowait()
            except Exception:
                return
            identity = self._identities.get(key)
            if identity is not None:  # else the node learns it from its next heartbeat's reply
                self._send(sock, identity, codec.pack_message({"id": None, "type": "event"}, event))

    def _serve_one(self, frames: list[zmq.Frame]) -> list[Any] | None:
        header: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            if len(frames) != 3:
                raise ProtocolError(f"a gateway message has a header and a body frame; got {len(frames) - 1} frame(s)")
            header = codec.unpack_header(frames[1])
            key = frames[1].get("User-Id")
            peer = self.gateway.peer(key)
            if peer.node is not None:
                self._identities[key] = frames[0].bytes
            body = codec.unpack_body(frames[2])
            reply = dispatch.handle(self.gateway, peer, str(header["type"]), body)
            status = "ok"
        except SyftError as e:
            reply, status = e.to_wire(), "error"
            log.info("%.100s refused: %s: %.300s", header.get("type", "message"), type(e).__name__, e.message)
        except Exception as e:  # a bug must not take the gateway down
            log.exception("internal error while handling %s", header.get("type", "a message"))
            reply, status = (
                SyftError(f"internal error on the gateway ({type(e).__name__}); it keeps serving").to_wire(),
                "error",
            )
        if header.get("noreply") and status == "ok":
            return None
        ms = round((time.perf_counter() - started) * 1000, 3)
        return codec.pack_message({"id": header.get("id"), "type": "reply", "status": status, "ms": ms}, reply)


def serve(
    folder: str | Path,
    host: str | None = None,
    port: int | None = None,
    parent_pid: int | None = None,
    argv: Sequence[str] = (),
    **overrides: Any,
) -> None:
    """Serve a gateway folder until SIGTERM or Ctrl-C (or until ``parent_pid`` exits)."""
    os.umask(0o077)
    server = GatewayServer(folder, host=host, port=port, parent_pid=parent_pid, argv=argv, **overrides)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve()
