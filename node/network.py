"""A node's membership of a network: its link to the gateway, kept alive from one thread.

The owner asks the node to join (``network.join``); the node signs a registration with its own
key and keeps, in its database, which gateway it belongs to, so a restarted node rejoins by
itself. From then on the agent sends a heartbeat every ``NodeConfig.heartbeat_s``, publishes
the public listing of each dataset on every upload and delete (and all of them when the
gateway's count differs from the node's), fetches account requests and files them in the
owners' queue, and reports each decision back. The node serves its users whatever the gateway
does: a gateway that does not answer is only a status line.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from syft_kernel.core import codec, schema
from syft_kernel.core.errors import InvalidArgument, NodeUnavailable, ProtocolError, SyftError, from_wire
from syft_kernel.core.keys import KeyPair, check_public_key, read_keypair, registration_message
from syft_kernel.core.listing import check_listing, listing

if TYPE_CHECKING:
    from .state import DataNode

log = logging.getLogger("syft_kernel.node.network")
MAX_EVENTS = 16  # events kept between beats (each says only: an account request waits)
CHUNK = 512 * 1024  # bytes of listings per publish message (the gateway takes 2 MB at most)
META = "network"  # node.db meta: the gateway's connection info and the membership's settings


class GatewayLink:
    """A DEALER to the gateway, CURVE with the node's own key: one request at a time."""

    def __init__(self, connection: dict[str, Any], keys: KeyPair) -> None:
        self.connection = connection
        self.name = str(connection.get("name", "the gateway"))
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = connection["node_public_key"].encode()
        self.sock.curve_publickey = keys.public.encode()
        self.sock.curve_secretkey = keys.secret.encode()  # type: ignore[union-attr]
        self.sock.linger = 0
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queues for a gateway that is not connected
        self.sock.setsockopt(zmq.MAXMSGSIZE, 16 * 2**20)  # what a gateway may send: bounded
        self.sock.setsockopt(zmq.RCVHWM, 64)
        self.sock.connect(next(a for a in connection["addresses"] if a.startswith("tcp://")))
        self.lock = threading.Lock()
        self.closing = threading.Event()  # close() cuts a request short: a node stops at once
        self.ids = 0
        self.events: list[dict[str, Any]] = []

    def request(self, body: schema.Body, timeout: float = 10.0) -> dict[str, Any]:
        """Send ``body`` and return the gateway's reply (its refusal raised as a ``SyftError``)."""
        with self.lock:
            self.ids += 1
            msg_id = self.ids
            frames = codec.pack_message({"id": msg_id, "type": body.TYPE}, body.to_wire())
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.sock.send_multipart(frames, zmq.NOBLOCK)
                    break
                except zmq.Again:
                    if time.monotonic() > deadline or self.closing.is_set():
                        raise NodeUnavailable(f"the gateway {self.name} is not answering") from None
                    self.sock.poll(20, zmq.POLLOUT)  # wakes as soon as the connection is up
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self.closing.is_set():
                    raise NodeUnavailable(f"the gateway {self.name} did not answer in {timeout:.0f}s")
                if not self.sock.poll(int(min(left, 0.1) * 1000) + 1):
                    continue
                reply = self.sock.recv_multipart()
                if len(reply) < 2:
                    continue
                header = codec.unpack_header(reply[0], require_id=False)
                if header.get("type") == "event":
                    event = codec.unpack_body(reply[1])
                    if isinstance(event, dict) and len(self.events) < MAX_EVENTS:
                        self.events.append(event)
                    continue
                if header.get("id") != msg_id:
                    continue  # the late reply to a request that timed out
                out = codec.unpack_body(reply[1])
                if header.get("status") == "error":
                    raise from_wire(out if isinstance(out, dict) else {})
                return out if isinstance(out, dict) else {}

    def take_events(self) -> list[dict[str, Any]]:
        """Events the gateway pushed, received meanwhile (and those waiting on the socket)."""
        with self.lock:
            while self.sock.poll(0):
                reply = self.sock.recv_multipart()
                if len(reply) >= 2 and codec.unpack_header(reply[0], require_id=False).get("type") == "event":
                    event = codec.unpack_body(reply[1])
                    if isinstance(event, dict) and len(self.events) < MAX_EVENTS:
                        self.events.append(event)
            events, self.events = self.events, []
            return events

    def close(self) -> None:
        self.closing.set()
        with self.lock:
            self.sock.close(0)
            self.ctx.term()


def check_gateway_connection(info: Any) -> dict[str, Any]:
    """A gateway's connection file (its contents), checked before the node uses it."""
    if not isinstance(info, dict) or info.get("kind") != "gateway":
        raise InvalidArgument("that is not a gateway's connection file (syft-kernel gateway init makes one)")
    addresses = info.get("addresses")
    if not isinstance(addresses, list) or not any(isinstance(a, str) and a.startswith("tcp://") for a in addresses):
        raise InvalidArgument("the gateway's connection file has no tcp:// address")
    check_public_key(info.get("node_public_key"))  # type: ignore[arg-type]
    name = info.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise InvalidArgument("the gateway's connection file has no name")
    return {
        "kind": "gateway",
        "name": name,
        "addresses": [a for a in addresses if isinstance(a, str)][:8],
        "node_public_key": info["node_public_key"],
    }


class NetworkAgent:
    """The node's side of its membership: joins, heartbeats, listings and account requests."""

    def __init__(self, node: DataNode) -> None:
        self.node = node
        self.keys = read_keypair(node.folder / "keys" / "node.key")
        self.addresses: list[str] = []  # what the node serves on (set by the server once bound)
        self.link: GatewayLink | None = None
        self.gateway_status = ""  # pending | admitted, as the gateway last said
        self.error = ""
        self.last_contact: float | None = None
        self.listed: int | None = None  # how many listings the gateway holds, as it last said
        self.unlisted: dict[str, str] = {}  # datasets the gateway would refuse, and why
        self._dirty: set[str] = set()
        self._registered = False
        self._full = True
        self._lock = threading.Lock()
        self._turn = threading.Lock()  # one of: a beat, a join, a leave
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- membership, persisted in the node's database
    @property
    def membership(self) -> dict[str, Any] | None:
        raw = self.node.db.get_meta(META)
        return json.loads(raw) if raw else None

    def start(self) -> None:
        """Run the agent's thread (once the server knows its addresses)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="node-network", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the agent (the node is stopping): a beat under way is cut short."""
        self._stop.set()
        self._wake.set()
        if self.link is not None:
            self.link.closing.set()
        if self._thread is not None:
            self._thread.join(5)
        self._close_link()

    def changed(self, dataset: str) -> None:
        """A dataset was uploaded, changed or deleted: publish its listing (or its removal)."""
        with self._lock:
            self._dirty.add(dataset)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def public_address(self) -> list[str]:
        if self.node.limits.public_address:
            return [self.node.limits.public_address]
        return [a for a in self.addresses if a.startswith("tcp://")]

    def join(self, connection: dict[str, Any], public_rows: bool | list[str]) -> dict[str, Any]:
        """Register with the gateway now (signed with the node's key) and remember it."""
        with self._turn:
            return self._join(connection, public_rows)

    def _join(self, connection: dict[str, Any], public_rows: bool | list[str]) -> dict[str, Any]:
        current = self.membership
        if current is not None and current["connection"]["node_public_key"] != connection["node_public_key"]:
            raise InvalidArgument(
                f"{self.node.name} is on the network {current['connection']['name']}: "
                "leave it first (owner.network.leave())"
            )
        addresses = self.public_address()
        if not addresses or any(a.startswith(("tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:")) for a in addresses):
            raise InvalidArgument(
                "the node serves on no address others can reach: set NodeConfig.public_address "
                "(--NodeConfig.public_address=tcp://HOST:PORT) or serve on the host's own address"
            )
        link = GatewayLink(connection, self.keys)
        try:
            reply = self._register(link, connection, addresses)
        except BaseException:
            link.close()
            raise
        self._close_link()
        self.link = link
        membership = {"connection": connection, "public_rows": public_rows, "joined_at": time.time()}
        self.node.db.set_meta(META, json.dumps(membership))
        self.gateway_status, self.error, self.last_contact = reply["status"], "", time.time()
        self._full = True
        self._registered = True
        if reply["status"] == "admitted":  # listed before join returns, so a search finds it at once
            try:
                names = self.node.db.dataset_names()
                self._publish(membership, names)
                self.listed = len(names) - len(self.unlisted)
            except SyftError as e:  # the next heartbeat tries again
                log.warning("could not publish the listings yet: %s", e.message)
        self.start()
        self._wake.set()
        log.info("joined the network %s (%s)", connection["name"], reply["status"])
        return reply

    def _register(self, link: GatewayLink, connection: dict[str, Any], addresses: list[str]) -> dict[str, Any]:
        reg = schema.Registration(
            gateway=connection["name"],
            name=self.node.name,
            addresses=addresses,
            public_key=self.keys.public,
            signing_key=self.keys.sign_public or "",
            timestamp=time.time(),
            nonce=secrets.token_hex(16),
        ).to_wire()
        signature = self.keys.sign(registration_message(reg))
        return link.request(schema.GatewayJoin(registration=reg, signature=signature))

    def leave(self) -> dict[str, Any]:
        """Leave the network: the gateway drops the node's listings (told if it answers). A beat
        under way is cut short: a slow gateway never keeps an owner on it."""
        if self.link is not None:
            self.link.closing.set()
        with self._turn:
            return self._leave()

    def _leave(self) -> dict[str, Any]:
        current = self.membership
        if current is None:
            raise InvalidArgument(f"{self.node.name} is on no network: join one with owner.network.join(...)")
        told = True
        self._close_link()  # (the beat's, cut short): a fresh one says goodbye
        try:
            link = self.link = GatewayLink(current["connection"], self.keys)
            link.request(schema.GatewayLeave(), timeout=5.0)
        except SyftError as e:
            told = False
            log.warning("left the network %s without telling it: %s", current["connection"]["name"], e.message)
        with self.node.db.tx() as c:
            c.execute("DELETE FROM meta WHERE key=?", (META,))
            c.execute("DELETE FROM network_outbox")
            c.execute(  # asked through a network the node is no longer on: nobody could hear the answer
                "UPDATE requests SET status='denied', comment=?, decided_at=? WHERE kind='account' AND status='pending'",
                (f"{self.node.name} left the network {current['connection']['name']}", time.time()),
            )
        self._close_link()
        self.gateway_status, self.error = "", ""
        return {"left": current["connection"]["name"], "told": told}

    def describe(self) -> dict[str, Any]:
        """What ``owner.network`` shows: the gateway, the status and what waits."""
        current = self.membership
        if current is None:
            return {"joined": False}
        (waiting,) = self.node.db.conn.execute(
            "SELECT COUNT(*) FROM requests WHERE kind='account' AND status='pending'"
        ).fetchone()
        return {
            "joined": True,
            "gateway": current["connection"]["name"],
            "addresses": current["connection"]["addresses"],
            "status": self.gateway_status or "not yet heard from",
            "online": self.last_contact is not None
            and not self.error
            and time.time() - self.last_contact < max(3 * self.node.limits.heartbeat_s, self._timeout()),
            "error": self.error,
            "last_contact": self.last_contact,
            "joined_at": current["joined_at"],
            "public_rows": current["public_rows"],
            "datasets": len(self.node.db.dataset_names()),
            "listed": self.listed,
            "unlisted": dict(self.unlisted),
            "account_requests": int(waiting),
        }

    # ---- the loop
    def _close_link(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(0.5, next_beat - time.monotonic())))
            if self._stop.is_set():
                return
            woken = self._wake.is_set()
            self._wake.clear()
            current = self.membership
            if current is None:
                self._registered = False
                continue
            if not woken and time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.node.limits.heartbeat_s
            with self._turn:  # join and leave swap the link: never under a beat
                self._once(current)

    def _once(self, current: dict[str, Any]) -> None:
        """One beat: (re)register if needed, heartbeat, publish, fetch and report accounts."""
        if self.membership is None:  # left meanwhile
            return
        try:
            if self.link is None:
                self.link = GatewayLink(current["connection"], self.keys)
            if not self._registered:  # a restarted node registers again (its addresses may have moved)
                self._register(self.link, current["connection"], self.public_address())
                self._registered = True
            self._beat(current)
            self.error = ""
        except SyftError as e:
            if "not a member" in e.message:
                self._registered = False
            if self.error != e.message:
                log.warning("the gateway %s: %s", current["connection"]["name"], e.message)
            self.error = e.message
        except Exception as e:  # a bug here must never take the node down
            log.exception("network agent")
            self.error = f"internal error ({type(e).__name__})"

    def _beat(self, current: dict[str, Any]) -> None:
        assert self.link is not None
        names = self.node.db.dataset_names()
        reply = self.link.request(schema.GatewayHeartbeat(datasets=len(names)), timeout=self._timeout())
        if not isinstance(reply.get("status"), str) or not isinstance(reply.get("accounts", 0), int):
            raise self._malformed("gateway.heartbeat")
        self.last_contact = time.time()
        status = str(reply.get("status", ""))
        self.listed = reply.get("datasets") if isinstance(reply.get("datasets"), int) else None
        if status != "admitted":
            self.gateway_status = status
            return
        if self.gateway_status != "admitted" or reply.get("datasets") != len(names) - len(self.unlisted):
            self._full = True
        self._publish(current, names)
        self.listed = len(names) - len(self.unlisted)
        self.gateway_status = status  # admitted, once its listings are published
        events = self.link.take_events()
        if reply.get("accounts") or any(e.get("event") == "accounts.pending" for e in events):
            self._fetch_accounts()
        self._flush_outbox()

    def _malformed(self, what: str) -> ProtocolError:
        name = (self.membership or {}).get("connection", {}).get("name", "the gateway")
        return ProtocolError(f"the gateway {name} sent a malformed reply to {what}: ask its operator")

    def _timeout(self) -> float:
        """How long a heartbeat waits: a few beats, so a gateway that went away shows soon."""
        return max(2.0, min(10.0, 10 * self.node.limits.heartbeat_s))

    def _publish(self, current: dict[str, Any], names: list[str]) -> None:
        """Publish what changed (everything, when ``_full``), in chunks the gateway takes; a
        dataset the gateway would refuse is left out and named (``unlisted``), the others listed."""
        assert self.link is not None  # (its lock makes the join's publish and the agent's take turns)
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            full, self._full = self._full, False
        rows = current.get("public_rows", False)
        try:
            if not full and not dirty:
                return
            targets = names if full else [n for n in sorted(dirty) if n in names]
            gone = [] if full else [n for n in sorted(dirty) if n not in names]
            listings = []
            for n in targets:
                item = self._listing(n, rows)
                if item is None:
                    continue
                try:
                    listings.append(check_listing(item))
                    self.unlisted.pop(n, None)
                except InvalidArgument as e:
                    self.unlisted[n] = e.message
            for n in gone:
                self.unlisted.pop(n, None)
            chunks: list[list[dict[str, Any]]] = [[]]
            size = 0
            for item in listings:
                n_bytes = len(msgpack.packb(item))
                if chunks[-1] and size + n_bytes > CHUNK:
                    chunks.append([])
                    size = 0
                chunks[-1].append(item)
                size += n_bytes
            for k, chunk in enumerate(chunks):
                keep = [x["name"] for x in listings] if full and k == 0 else None
                self.link.request(schema.GatewayPublish(upsert=chunk, remove=gone if k == 0 else [], keep=keep))
        except BaseException:
            with self._lock:  # try again at the next beat
                self._dirty |= dirty
                self._full = self._full or full
            raise

    def _listing(self, name: str, public_rows: bool | list[str]) -> dict[str, Any] | None:
        d = self.node.db.dataset(name)
        if d is None:
            return None
        rows_public = public_rows is True or (isinstance(public_rows, list) and name in public_rows)
        return listing(d, rows_public)

    def _fetch_accounts(self) -> None:
        assert self.link is not None
        from .accounts import file_account

        accounts = self.link.request(schema.GatewayAccountsPending()).get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
            raise self._malformed("gateway.accounts.pending")
        for acct in accounts[:1000]:
            file_account(self.node, acct)
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        assert self.link is not None
        for row in self.node.db.conn.execute("SELECT * FROM network_outbox").fetchall():
            try:
                self.link.request(
                    schema.GatewayAccountSettle(
                        id=row["account"], status=row["status"], comment=row["comment"], request=row["request"]
                    )
                )
            except SyftError as e:
                if isinstance(e, NodeUnavailable):
                    raise
                log.warning("the gateway refused account step %s: %s", row["account"], e.message)
            with self.node.db.tx() as c:
                c.execute("DELETE FROM network_outbox WHERE account=? AND status=?", (row["account"], row["status"]))
