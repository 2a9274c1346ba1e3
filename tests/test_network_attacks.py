"""The gateway as an attacker meets it: forged, stale, replayed and misdirected registrations, a
name taken, listings that would publish private values, members' messages from strangers, other
people's account requests. Each is refused with a clear error, nothing changes, and the gateway
goes on serving. A real gateway process; the attacker speaks its protocol with their own keys."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import syft_kernel as sk
from syft_kernel.core import schema
from syft_kernel.core.keys import KeyPair, registration_message
from syft_kernel.core.listing import listing
from syft_kernel.launcher import GatewayProcess
from syft_kernel.node.network import GatewayLink


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = sk.start_gateway(tmp_path_factory.mktemp("attacks") / "grid", name="grid", auto_admit=True)
    yield gw
    assert gw.stop() == 0


def link(gw: GatewayProcess, pair: KeyPair | None = None) -> tuple[GatewayLink, KeyPair]:
    pair = pair or sk.generate_keypair("node")
    return GatewayLink(gw.connection, pair), pair


def registration(pair: KeyPair, name: str, **changes: Any) -> dict[str, Any]:
    reg = {
        "gateway": "grid",
        "name": name,
        "addresses": ["tcp://10.0.0.1:5555"],
        "public_key": pair.public,
        "signing_key": pair.sign_public,
        "timestamp": time.time(),
        "nonce": secrets.token_hex(16),
    }
    reg.update(changes)
    return reg


def join(lk: GatewayLink, signer: KeyPair, reg: dict[str, Any]) -> dict[str, Any]:
    return lk.request(schema.GatewayJoin(registration=reg, signature=signer.sign(registration_message(reg))))


def members(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    with gw.login(key=_scientist(gw)) as net:
        return {n.name: n.to_dict() for n in net.nodes}


def _scientist(gw: GatewayProcess) -> Path:
    path = gw.folder.parent / "keys" / "eve.key"
    if not path.exists():
        sk.write_keypair(sk.generate_keypair("eve"), path.parent)
    return path


@pytest.fixture(scope="module")
def hospital(gateway: GatewayProcess) -> Iterator[tuple[GatewayLink, KeyPair]]:
    """A genuine member: joined and listing one dataset."""
    lk, pair = link(gateway)
    assert join(lk, pair, registration(pair, "hospital"))["status"] == "admitted"
    d = {
        "name": "births",
        "description": "February",
        "tags": ["#February"],
        "assets": [{"name": "t", "columns": ["a"], "dtypes": ["int64"], "shape": [300, 1], "type": "DataFrame"}],
    }
    lk.request(schema.GatewayPublish(upsert=[listing(d, rows_public=False)], full=True))
    yield lk, pair
    lk.close()


def still_serving(gw: GatewayProcess) -> None:
    assert "hospital" in members(gw)


def test_a_forged_signature_is_refused(gateway: GatewayProcess, hospital: Any) -> None:
    lk, pair = link(gateway)
    other = sk.generate_keypair("other")
    reg = registration(pair, "forged")
    with pytest.raises(sk.PermissionDenied, match="signature does not verify"):
        join(lk, other, reg)  # signed with a key the registration does not name
    reg2 = registration(pair, "forged")
    with pytest.raises(sk.PermissionDenied, match="signature does not verify"):
        lk.request(schema.GatewayJoin(registration=reg2, signature="00" * 64))
    assert "forged" not in members(gateway)
    still_serving(gateway)
    lk.close()


def test_a_key_it_does_not_hold_is_refused(gateway: GatewayProcess, hospital: Any) -> None:
    """Eve registers the hospital's public key as her own: CURVE proved she holds another one."""
    _, real = hospital
    lk, eve = link(gateway)
    reg = registration(eve, "hospital2", public_key=real.public)
    with pytest.raises(sk.PermissionDenied, match="a node joins with its own key"):
        join(lk, eve, reg)
    assert "hospital2" not in members(gateway)
    lk.close()


def test_a_name_already_taken_is_refused(gateway: GatewayProcess, hospital: Any) -> None:
    lk, pair = link(gateway)
    with pytest.raises(sk.InvalidArgument, match="the name 'hospital' is taken on grid by another node"):
        join(lk, pair, registration(pair, "hospital", addresses=["tcp://10.6.6.6:5555"]))
    assert members(gateway)["hospital"]["addresses"] == ["tcp://10.0.0.1:5555"]  # unchanged
    lk.close()


def test_stale_replayed_and_misdirected_registrations(gateway: GatewayProcess, hospital: Any) -> None:
    lk, pair = hospital
    with pytest.raises(sk.PermissionDenied, match="stale or replayed"):
        join(lk, pair, registration(pair, "hospital", timestamp=time.time() - 3600))
    with pytest.raises(sk.PermissionDenied, match="stale or replayed"):
        join(lk, pair, registration(pair, "hospital", timestamp=time.time() + 3600))
    reg = registration(pair, "hospital")
    sig = pair.sign(registration_message(reg))
    lk.request(schema.GatewayJoin(registration=reg, signature=sig))
    with pytest.raises(sk.PermissionDenied, match="used before"):
        lk.request(schema.GatewayJoin(registration=reg, signature=sig))  # the same one again
    with pytest.raises(sk.InvalidArgument, match="for the gateway 'elsewhere'"):
        join(lk, pair, registration(pair, "hospital", gateway="elsewhere"))
    for bad in (["ipc:///tmp/x"], ["tcp://a b:1"], [], ["http://x:1"]):
        with pytest.raises((sk.InvalidArgument, sk.ProtocolError)):
            join(lk, pair, registration(pair, "hospital", addresses=bad))
    with pytest.raises(sk.InvalidArgument, match="node name"):
        join(lk, pair, registration(pair, "../etc"))
    with pytest.raises(sk.ProtocolError):
        lk.request(schema.GatewayJoin(registration={"name": "x"}, signature="00"))
    assert members(gateway)["hospital"]["addresses"] == ["tcp://10.0.0.1:5555"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("values", [1, 2, 3]),  # a private value under a new field
        ("mock", {"a": [1]}),
        ("owners", ["owner"]),
    ],
)
def test_a_listing_with_more_than_the_public_fields_is_refused(
    gateway: GatewayProcess, hospital: Any, field: str, value: Any
) -> None:
    lk, _ = hospital
    good = {
        "name": "extra",
        "description": "",
        "tags": [],
        "assets": [{"name": "t", "type": "DataFrame"}],
        "has_mock": True,
    }
    with pytest.raises(sk.InvalidArgument, match="the gateway accepts only public metadata"):
        lk.request(schema.GatewayPublish(upsert=[good, {**good, "name": "extra2", field: value}]))
    with pytest.raises(sk.InvalidArgument, match="the gateway accepts only public metadata"):
        lk.request(
            schema.GatewayPublish(upsert=[{**good, "assets": [{"name": "t", "type": "DataFrame", field: value}]}])
        )
    with gateway.login(key=_scientist(gateway)) as net:
        assert [h.name for h in net.datasets.search("", node="hospital")] == ["births"]  # nothing changed


@pytest.mark.parametrize(
    "asset",
    [
        {"name": "t", "type": "DataFrame", "columns": ["a"], "dtypes": []},  # a column without its dtype
        {"name": "t", "type": "pickle"},
        {"name": "t", "type": "DataFrame", "rows": -1},
        {"name": "t", "type": "DataFrame", "rows": True},
        {"name": "t", "type": "ndarray", "shape": [2**40, 2**40]},
        {"name": "t", "type": "DataFrame", "columns": ["x" * 201], "dtypes": ["int64"]},
        {"name": "../t", "type": "DataFrame"},
    ],
)
def test_malformed_listings_are_refused(gateway: GatewayProcess, hospital: Any, asset: dict[str, Any]) -> None:
    lk, _ = hospital
    with pytest.raises(sk.InvalidArgument):
        lk.request(schema.GatewayPublish(upsert=[{"name": "odd", "assets": [asset]}]))
    still_serving(gateway)


def test_member_messages_from_a_stranger_are_refused(gateway: GatewayProcess, hospital: Any) -> None:
    lk, _ = link(gateway)
    good = {"name": "fake", "assets": [{"name": "t", "type": "DataFrame"}]}
    with pytest.raises(sk.Unauthorized, match="only a member node sends this"):
        lk.request(schema.GatewayPublish(upsert=[good]))
    with pytest.raises(sk.Unauthorized):
        lk.request(schema.GatewayPublish(remove=["births"]))
    with pytest.raises(sk.Unauthorized):
        lk.request(schema.GatewayAccountsPending())
    with pytest.raises(sk.Unauthorized):
        lk.request(schema.GatewayLeave())
    with pytest.raises(sk.ProtocolError, match="not a member"):
        lk.request(schema.GatewayHeartbeat())
    assert "hospital" in members(gateway)
    lk.close()


def test_a_pending_node_publishes_nothing(tmp_path: Path) -> None:
    gw = sk.start_gateway(tmp_path / "g", name="grid")
    try:
        lk, pair = link(gw)
        assert join(lk, pair, registration(pair, "newcomer"))["status"] == "pending"
        with pytest.raises(sk.Unauthorized, match="syft-kernel gateway admit newcomer"):
            lk.request(schema.GatewayPublish(upsert=[{"name": "d", "assets": [{"name": "t", "type": "DataFrame"}]}]))
        lk.close()
    finally:
        gw.stop()


def test_account_requests_are_their_requesters_and_nodes_own(gateway: GatewayProcess, hospital: Any) -> None:
    node_link, _ = hospital
    with gateway.login(key=_scientist(gateway)) as net:
        req = net.request_account("hospital", reason="study", wait=0.2)
        assert req.status == "forwarding"  # no node process fetches it here
        with pytest.raises(sk.InvalidArgument, match="you already asked hospital for an account"):
            net.request_account("hospital", reason="x", name="someone-else", wait=0)
        # another scientist cannot read it, a stranger cannot settle it
        mallory_key = sk.write_keypair(sk.generate_keypair("mallory"), gateway.folder.parent / "keys")[0]
        with gateway.login(key=mallory_key) as other:
            with pytest.raises(sk.NotFound):
                other._call(schema.GatewayAccountStatus(id=req.id))
        stranger, _ = link(gateway)
        with pytest.raises(sk.Unauthorized):
            stranger.request(schema.GatewayAccountSettle(id=req.id, status="approved"))
        stranger.close()
        # another member cannot settle it either
        lk2, pair2 = link(gateway)
        join(lk2, pair2, registration(pair2, "clinic"))
        with pytest.raises(sk.NotFound, match="for clinic"):
            lk2.request(schema.GatewayAccountSettle(id=req.id, status="approved"))
        lk2.request(schema.GatewayLeave())
        lk2.close()
        # its node moves it on, step by step and never back
        pending = node_link.request(schema.GatewayAccountsPending())["accounts"]
        assert [a["id"] for a in pending] == [req.id] and pending[0]["name"] == "eve"
        with pytest.raises(sk.InvalidArgument, match="cannot become"):
            node_link.request(schema.GatewayAccountSettle(id=req.id, status="bogus"))
        node_link.request(schema.GatewayAccountSettle(id=req.id, status="denied", comment="no"))
        assert node_link.request(schema.GatewayAccountsPending())["accounts"] == []
        with pytest.raises(sk.InvalidArgument, match="denied: it cannot become approved"):
            node_link.request(schema.GatewayAccountSettle(id=req.id, status="approved"))
        assert req.refresh().status == "denied"
        # many requests from one key, to many nodes: bounded
        links = []
        try:
            for i in range(21):
                lk_i, pair_i = link(gateway)
                join(lk_i, pair_i, registration(pair_i, f"n{i}"))
                links.append(lk_i)
            with pytest.raises(sk.QuotaExceeded, match="account requests waiting"):
                for i in range(21):
                    net.request_account(f"n{i}", reason="x", wait=0)
        finally:
            for lk_i in links:
                lk_i.request(schema.GatewayLeave())  # their open requests are denied with them
                lk_i.close()
        assert net.request_account("hospital", reason="x", name="eve2", wait=0).status == "forwarding"


def test_garbage_on_the_wire_gets_an_error_and_the_gateway_goes_on(gateway: GatewayProcess, hospital: Any) -> None:
    lk, _ = link(gateway)
    for frames in ([b"x"], [b"\x80", b"\x81"], [b"", b"", b"", b""]):
        lk.sock.send_multipart(frames)
    with pytest.raises(sk.ProtocolError, match="unknown message type"):
        lk.request(schema.Hello())  # a node's message, not a gateway's
    still_serving(gateway)
    lk.close()


# ---------------------------------------------------------------- the node's side


class RogueGateway:
    """A gateway that lies: it admits anyone and hands the node malformed account requests. It
    records what the node publishes, so the test sees exactly what leaves the node."""

    def __init__(self, folder: Path) -> None:
        import threading

        from test_network_review import rogue_router

        from syft_kernel.core import codec

        self.pair, self.ctx, self.sock, self.connection = rogue_router("rogue")
        self.published: list[dict[str, Any]] = []
        self.settled: list[dict[str, Any]] = []
        self.accounts = [
            {"id": "a1", "name": "../../etc", "public_key": sk.generate_keypair("x").public, "reason": "r"},
            {"id": "a2", "name": "owner", "public_key": sk.generate_keypair("x").public, "reason": "r"},
            {"id": "a3", "name": "zed", "public_key": "not a key", "reason": "r"},
            {"id": "a4", "name": "zed", "public_key": sk.generate_keypair("x").public, "reason": ""},
            {
                "id": "a5",
                "name": "zed",
                "public_key": sk.generate_keypair("x").public,
                "reason": "r",
                "signing_key": "zz",
            },
            {
                "id": "a6",
                "name": "zed",
                "public_key": sk.generate_keypair("x").public,
                "reason": "fine",
                "role": "owner",
            },
        ]
        self.codec = codec
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            ident, head, body = self.sock.recv_multipart()
            header, msg = self.codec.unpack_header(head), self.codec.unpack_body(body)
            kind = header["type"]
            if kind == "gateway.join":
                reply: dict[str, Any] = {"gateway": "rogue", "name": msg["registration"]["name"], "status": "admitted"}
            elif kind == "gateway.heartbeat":
                reply = {"status": "admitted", "datasets": -1, "accounts": len(self.accounts)}
            elif kind == "gateway.publish":
                self.published.append(msg)
                reply = {"datasets": 1}
            elif kind == "gateway.accounts.pending":
                reply, self.accounts = {"accounts": self.accounts}, []
            elif kind == "gateway.account.settle":
                self.settled.append(msg)
                reply = {}
            else:
                reply = {}
            self.sock.send_multipart(
                [ident, *self.codec.pack_message({"id": header["id"], "type": "reply", "status": "ok"}, reply)]
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close(0)
        self.ctx.term()


def test_a_lying_gateway_gets_only_listings_and_files_only_sound_requests(tmp_path: Path) -> None:
    rogue = RogueGateway(tmp_path)
    node = sk.start_node(tmp_path / "n", name="n", settings={"heartbeat_s": 0.1})
    try:
        with node.login() as owner:
            import pandas as pd

            secret = pd.DataFrame({"patient": ["SECRET-123", "SECRET-456"], "age": [31, 45]})
            owner.datasets.upload("d", assets={"t": secret}, description="two patients", tags=["#x"])
            owner.network.join(rogue.connection)
            deadline = time.monotonic() + 15
            while len(rogue.settled) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            sent = repr(rogue.published)
            assert "SECRET" not in sent and "'rows'" not in sent  # no value and no row count left the node
            full = next(p for p in rogue.published if p.get("keep") is not None)  # the whole set, then chunks
            assert full["upsert"] == [
                {
                    "name": "d",
                    "description": "two patients",
                    "tags": ["#x"],
                    "assets": [
                        {"name": "t", "type": "DataFrame", "columns": ["patient", "age"], "dtypes": ["str", "int64"]}
                    ],
                    "has_mock": True,
                }
            ]
            steps = {s["id"]: s for s in rogue.settled}
            assert [steps[i]["status"] for i in ("a1", "a2", "a3", "a4", "a5")] == ["denied"] * 5
            assert "already has a user named 'owner'" in steps["a2"]["comment"]
            assert steps["a6"]["status"] == "filed"  # a sound one: filed, as a data scientist's, whatever it claims
            (filed,) = [r for r in owner.requests if r.kind == "account"]
            assert filed.requester == "zed"
            filed.approve("ok")
            zed = next(u for u in owner.users if u.name == "zed")
            assert zed.role == "data_scientist"
            assert owner.datasets["d"]["t"].mock is not None  # the node serves on
    finally:
        node.stop()
        rogue.close()


def test_only_owners_put_a_node_on_a_network(tmp_path: Path) -> None:
    node = sk.start_node(tmp_path / "n", name="n")
    key, pub = sk.write_keypair(sk.generate_keypair("alice"), tmp_path / "keys")
    try:
        with node.login() as owner:
            owner.users.add("alice", role="data_scientist", public_key=pub)
            for bad, why in (
                ({"name": "g"}, "not a gateway's connection file"),
                ({"kind": "gateway", "name": "g", "addresses": ["ipc:///x"], "node_public_key": "x" * 40}, "no tcp://"),
                (
                    {"kind": "gateway", "name": "g", "addresses": ["tcp://1.2.3.4:1"], "node_public_key": "short"},
                    "public key",
                ),
            ):
                with pytest.raises(sk.InvalidArgument, match=why):
                    owner.network.join(bad)
            with pytest.raises(sk.InvalidArgument, match="dataset name"):
                owner.network.join(
                    {"kind": "gateway", "name": "g", "addresses": ["tcp://127.0.0.1:1"], "node_public_key": pub_key()},
                    public_rows=["../x"],
                )
            assert not owner.network.status()["joined"]
            with pytest.raises(sk.InvalidArgument, match="on no network"):
                owner.network.leave()
        with sk.login(node.connection_file, key=key) as alice:
            with pytest.raises(sk.Unauthorized, match="network.join is for data owners"):
                alice.network.join({"kind": "gateway"})
            with pytest.raises(sk.Unauthorized):
                alice.network.status()
    finally:
        node.stop()


def pub_key() -> str:
    return sk.generate_keypair("g").public


def test_every_field_of_every_gateway_message_refuses_wrong_types(gateway: GatewayProcess, hospital: Any) -> None:
    """Each gateway message, with each field missing or of each wrong kind, from a stranger and
    from a member: a reply that is one of our errors (never an internal one), and the gateway on."""
    from test_wire_fuzz import OUR_ERRORS, WRONG, _paths, _replace

    from syft_kernel.core import codec
    from syft_kernel.gateway.dispatch import HANDLERS

    node_link, pair = hospital
    d = {"name": "fz", "description": "", "tags": [], "assets": [{"name": "t", "type": "DataFrame"}], "has_mock": True}
    bodies: dict[str, dict[str, Any]] = {
        "gateway.hello": {},
        "gateway.join": {"registration": registration(pair, "hospital"), "signature": "00" * 64},
        "gateway.leave": {},
        "gateway.heartbeat": {"datasets": 1},
        "gateway.nodes": {},
        "gateway.publish": {"upsert": [d], "remove": ["zz"], "full": False},
        "gateway.search": {"query": "births", "tags": ["#February"], "node": "hospital", "name": "births", "limit": 5},
        "gateway.account.request": {"node": "nowhere", "name": "eve", "reason": "r", "signing_key": None},
        "gateway.account.status": {"id": "a0"},
        "gateway.accounts.pending": {},
        "gateway.account.settle": {"id": "a0", "status": "filed", "comment": "", "request": ""},
    }
    assert set(bodies) == set(HANDLERS)
    stranger, _ = link(gateway)
    sent = 0
    for msg_type, base in sorted(bodies.items()):
        if msg_type == "gateway.leave":
            continue  # the member stays a member; leave is refused to strangers above
        variants: list[Any] = [None, [], "body", 7, [base]]
        variants += [{k: v for k, v in base.items() if k != key} for key in base]
        variants += [_replace(base, path, value) for path in _paths(base) for value in WRONG]
        for who in (stranger, node_link):
            for body in variants:
                with who.lock:
                    who.sock.send_multipart(codec.pack_message({"id": 1, "type": msg_type}, body))
                    while True:  # (events the gateway pushes to the member are not replies)
                        assert who.sock.poll(10_000), f"no reply to {msg_type} {body!r:.200}"
                        head, reply = who.sock.recv_multipart()[:2]
                        header = codec.unpack_header(head, require_id=False)
                        if header.get("type") != "event":
                            break
                out = codec.unpack_body(reply)
                assert header["status"] in ("ok", "error")
                if header["status"] == "error":
                    assert out["error"] in OUR_ERRORS and not out["message"].startswith("internal error"), (
                        msg_type,
                        body,
                        out,
                    )
                sent += 1
    assert sent > 500
    node_link.request(schema.GatewayPublish(remove=["fz"]))
    assert "internal error" not in gateway.log()
    still_serving(gateway)
    stranger.close()
