"""The network: a gateway, nodes joining and publishing listings, scientists searching, asking
for accounts and working on several nodes at once. Real gateway and node processes throughout."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel import batch as batching
from syft_kernel.launcher import GatewayProcess, NodeProcess
from syft_kernel.sample_data import birth_records

HEARTBEAT = {"heartbeat_s": 0.2}
NODES = ("h1", "h2", "h3")


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syft_kernel.cli", *args], capture_output=True, text=True, timeout=60)


class Grid:
    """A gateway, three nodes that joined it (admitted by the operator) and a scientist's key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gateway: GatewayProcess = sk.start_gateway(root / "grid", name="grid", settings={"offline_after_s": 1.5})
        self.nodes: dict[str, NodeProcess] = {}
        self.owners: dict[str, sk.Client] = {}
        for i, name in enumerate(NODES):
            node = sk.start_node(root / name, name=name, settings=HEARTBEAT)
            self.nodes[name] = node
            owner = self.owners[name] = node.login()
            births = birth_records(month=2, rows=300 + 100 * i)
            births["note"] = f"SECRET-{name}-value"  # a private value that must never reach the gateway
            owner.datasets.upload(
                "births",
                assets={"records": births},
                description=f"Birth records of {name}, February",
                tags=["#February", "#birth-records"],
            )
        self.keys = root / "keys"
        sk.write_keypair(sk.generate_keypair("alice"), self.keys)
        sk.write_keypair(sk.generate_keypair("mallory"), self.keys)

    @property
    def connection(self) -> Path:
        return self.gateway.connection_file

    def net(self, who: str = "alice") -> sk.Network:
        return sk.connect_network(self.connection, key=self.keys / f"{who}.key")

    def admit(self, name: str) -> None:
        out = cli("gateway", "admit", name, "--dir", str(self.root / "grid"))
        assert out.returncode == 0, out.stderr

    def close(self) -> None:
        for o in self.owners.values():
            o.close()
        for n in self.nodes.values():
            n.stop()
        self.gateway.stop()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    g = Grid(tmp_path_factory.mktemp("network"))
    try:
        for name in NODES:
            status = g.owners[name].network.join(g.connection)
            assert status["status"] == "pending"
            g.admit(name)
        with g.net() as net:
            wait_until(lambda: len(net.datasets.search("births")) == 3, what="three listings")
        yield g
    finally:
        g.close()


@pytest.fixture
def net(grid: Grid) -> Iterator[sk.Network]:
    with grid.net() as n:
        yield n


@contextlib.contextmanager
def spied(clients: dict[str, sk.Client], order: list[str]) -> Iterator[None]:
    """Note each client's sends and waits, in order (the node still does the work)."""
    for node, c in clients.items():
        send, reply = c.send, c.reply
        c.send = (lambda s, n: lambda *a, **k: (order.append(f"send {n}"), s(*a, **k))[1])(send, node)  # type: ignore[method-assign]
        c.reply = (lambda r, n: lambda *a, **k: (order.append(f"wait {n}"), r(*a, **k))[1])(reply, node)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for c in clients.values():
            del c.send, c.reply


def account(grid: Grid, net: sk.Network, node: str, name: str = "alice") -> sk.Client:
    """Ask ``node`` for an account through the gateway, approve it as its owner, log in."""
    req = net.request_account(node, reason="the February birth study", name=name)
    owner = grid.owners[node]
    pending = [r for r in owner.requests if r.kind == "account" and r.status == "pending" and r.requester == name]
    assert pending, owner.requests
    pending[0].approve("welcome")
    req.wait(timeout=15)
    return net.login(node)


# ---------------------------------------------------------------- the gateway and its operator


def test_gateway_init_serve_admit_from_the_command_line(tmp_path: Path) -> None:
    out = cli("gateway", "init", str(tmp_path / "g"), "--name", "grid2", "--port", "0")
    assert out.returncode == 0 and "connection file" in out.stdout
    again = cli("gateway", "init", str(tmp_path / "g"), "--name", "grid2")
    assert again.returncode == 2 and "already holds a gateway" in again.stderr
    assert "no node has joined yet" in cli("gateway", "nodes", "--dir", str(tmp_path / "g")).stdout
    missing = cli("gateway", "admit", "nobody", "--dir", str(tmp_path / "g"))
    assert missing.returncode == 2 and "no node 'nobody' asked to join" in missing.stderr
    assert "--GatewayConfig.offline_after_s" in cli("gateway", "config", str(tmp_path / "g")).stdout
    gw = sk.start_gateway(tmp_path / "g")
    try:
        with pytest.raises(sk.InvalidArgument, match="a gateway's connection file, not a node's"):
            sk.login(gw.connection_file, key=_key(tmp_path, "carol"))
        info = sk.connect_network(gw.connection_file, key=_key(tmp_path, "bob"))
        assert info.name == "grid2" and len(info.nodes) == 0
        info.close()
        node = sk.start_node(tmp_path / "n", name="n")
        with pytest.raises(sk.InvalidArgument, match="a node's connection file, not a gateway's"):
            sk.connect_network(node.connection_file, key=_key(tmp_path, "dan"))
        node.stop()
    finally:
        assert gw.stop() == 0
    assert "stopped" in gw.log()


def _key(folder: Path, name: str) -> Path:
    return sk.write_keypair(sk.generate_keypair(name), folder / "keys")[0]


def test_a_node_waits_for_admission_then_publishes(grid: Grid, tmp_path: Path) -> None:
    node = sk.start_node(tmp_path / "late", name="late", settings=HEARTBEAT)
    try:
        with node.login() as owner:
            owner.datasets.upload("digits-late", assets={"x": pd.DataFrame({"a": [1.0, 2.0]})}, tags=["#digits"])
            status = owner.network.join(grid.connection)
            assert status["status"] == "pending" and "syft-kernel gateway admit" in repr(status)
            listed = cli("gateway", "nodes", "--dir", str(grid.root / "grid")).stdout
            assert "late" in listed and "pending" in listed
            with grid.net() as net:
                assert "late" not in [n.name for n in net.nodes]  # scientists see admitted nodes only
                assert len(net.datasets.search("digits")) == 0
                grid.admit("late")
                status = owner.network.wait(timeout=15)  # admitted, and its listings published
                assert status["status"] == "admitted" and status["listed"] == status["datasets"] == 1
                assert len(net.datasets.search("digits")) == 1
                member = next(n for n in net.nodes if n.name == "late")
                assert member.online and member.datasets == 1 and member.addresses == node.connection["addresses"][-1:]
            owner.network.leave()
            assert not owner.network.status()["joined"]
            with grid.net() as net:
                assert "late" not in [n.name for n in net.nodes] and len(net.datasets.search("digits")) == 0
    finally:
        node.stop()


def test_listings_follow_uploads_and_deletes(grid: Grid, net: sk.Network) -> None:
    owner = grid.owners["h2"]
    owner.datasets.upload(
        "heart-rates",
        assets={"hr": pd.DataFrame({"bpm": [60.0, 72.0]})},
        description="Resting heart rates",
        tags=["#cardio"],
    )
    hit = wait_until(lambda: net.datasets.search("heart", tags=["cardio"]), what="the new listing")
    assert [(h.node, h.name) for h in hit] == [("h2", "heart-rates")]
    owner.datasets.delete("heart-rates")
    wait_until(lambda: len(net.datasets.search("heart")) == 0, what="the listing to go")


def test_the_gateway_holds_only_public_metadata(grid: Grid, net: sk.Network) -> None:
    hit = next(h for h in net.datasets.search("births", node="h1"))
    (asset,) = hit.assets
    assert asset["name"] == "records" and "note" in asset["columns"] and asset["dtypes"][0] == "int64"
    assert "rows" not in asset and hit.has_mock  # the row count is the owner's to publish
    raw = b"".join(p.read_bytes() for p in (grid.root / "grid").glob("gateway.db*"))
    assert b"SECRET-" not in raw  # no value of the data, in the database or its journal
    # an owner who makes row counts public
    status = grid.owners["h3"].network.join(grid.connection, public_rows=True)
    assert status["public_rows"] is True
    grid.owners["h3"].datasets.upload("small", assets={"t": pd.DataFrame({"a": [1, 2, 3]})})
    small = wait_until(lambda: net.datasets.search("small", node="h3"), what="h3's listing")
    assert small[0].assets[0]["rows"] == 3
    grid.owners["h3"].network.join(grid.connection, public_rows=False)
    grid.owners["h3"].datasets.delete("small")


def test_search_is_ranked_full_text_with_exact_tags(grid: Grid, net: sk.Network) -> None:
    o = grid.owners["h1"]
    o.datasets.upload(
        "asthma-visits", assets={"v": pd.DataFrame({"x": [1]})}, description="clinic visits", tags=["#Lung"]
    )
    o.datasets.upload("clinic-notes", assets={"v": pd.DataFrame({"x": [1]})}, description="mentions asthma once")
    try:
        hits = wait_until(lambda: net.datasets.search("asthma") if len(net.datasets.search("asthma")) == 2 else None)
        assert [h.name for h in hits] == ["asthma-visits", "clinic-notes"]  # a name hit ranks first
        assert [h.name for h in net.datasets.search("", tags=["lung"])] == ["asthma-visits"]  # '#' and case aside
        tagged = net.datasets.search("births", tags=["#February"])
        assert tagged.title == "grid: 'births' #February" and [h.node for h in tagged] == ["h1", "h2", "h3"]
        assert [h.name for h in net.datasets.search("asth")] == ["asthma-visits", "clinic-notes"]  # prefixes
        assert len(net.datasets.search("births", tags=["#February", "#birth-records"])) == 3  # every tag
        assert len(net.datasets.search("births", tags=["#March"])) == 0
        assert len(net.datasets.search("births february")) == 3  # every word
        assert len(net.datasets.search("births", limit=2)) == 2
        frame = net.datasets.search("births").to_frame()
        assert list(frame["node"]) == ["h1", "h2", "h3"]  # equal ranks: by node, then name
        assert "h1" in repr(net.datasets.search("births")) and "online" in repr(net.datasets.search("births"))
    finally:
        o.datasets.delete("asthma-visits")
        o.datasets.delete("clinic-notes")


@pytest.mark.parametrize(
    "query",
    ['"', "*", "AND OR NOT (", "births) OR (x", "NEAR(a b)", "col:value", "^births", "\x00", "é" * 300, "{a} -b"],
)
def test_malformed_queries_are_only_words(net: sk.Network, query: str) -> None:
    """FTS5's query syntax never sees the user's text: only its words, each quoted."""
    hits = net.datasets.search(query)
    assert all(h.node in (*NODES, "late", "flaky") for h in hits)
    assert len(net.datasets.search("births")) == 3  # the gateway goes on


def test_huge_queries_are_refused_clearly(net: sk.Network) -> None:
    with pytest.raises(sk.InvalidArgument, match="at most 1,000 characters"):
        net.datasets.search("x" * 1001)
    with pytest.raises(sk.InvalidArgument, match="at most 32"):
        net.datasets.search("", tags=["t"] * 33)
    with pytest.raises(sk.InvalidArgument, match="limit"):
        net.datasets.search("births", limit=10**6)
    assert len(net.datasets.search("births " * 130)) == 3  # many words: the first 32 count
    assert len(net.datasets.search("births")) == 3  # and the gateway goes on


# ---------------------------------------------------------------- accounts, login, pointers


def test_an_account_asked_through_the_network(grid: Grid, net: sk.Network) -> None:
    with pytest.raises(sk.AuthenticationError, match=r"no account on h1: ask for one with net.request_account"):
        net.login("h1")
    req = net.request_account("h1", reason="the February birth study")
    assert req.status == "filed" and req.node == "h1" and req.name == "alice"
    assert net.request_account("h1", reason="again").id == req.id  # one open request per key and node
    owner = grid.owners["h1"]
    (filed,) = [r for r in owner.requests if r.kind == "account" and r.status == "pending"]
    assert filed.requester == "alice" and filed.reason == "the February birth study"
    assert owner.network.status()["account_requests"] == 1
    filed.approve("welcome")
    assert req.wait(timeout=15).status == "approved" and req.comment == "welcome"
    alice = net.login("h1")
    assert (alice.user, alice.role) == ("alice", "data_scientist")
    assert net.login("h1") is alice  # kept
    assert [u.name for u in owner.users if u.name == "alice"] == ["alice"]
    with pytest.raises(sk.InvalidArgument, match="this key is registered on h1 already"):
        net.request_account("h1", reason="once more")


def test_a_denied_account_says_why(grid: Grid) -> None:
    with grid.net("mallory") as net:
        req = net.request_account("h2", reason="let me in")
        (filed,) = [r for r in grid.owners["h2"].requests if r.kind == "account" and r.requester == "mallory"]
        filed.deny("we do not know you")
        with pytest.raises(sk.PermissionDenied, match="we do not know you"):
            req.wait(timeout=15)
        with pytest.raises(sk.AuthenticationError):
            net.login("h2")


def test_an_account_for_a_name_that_exists_is_refused_at_once(grid: Grid, net: sk.Network) -> None:
    before = len(grid.owners["h3"].requests)
    with pytest.raises(sk.InvalidArgument, match="h3 already has a user named 'owner': ask again with another name"):
        net.request_account("h3", reason="x", name="owner")
    assert len(grid.owners["h3"].requests) == before
    with pytest.raises(sk.NotFound, match="no node 'nowhere' on grid"):
        net.request_account("nowhere", reason="x")
    with pytest.raises(sk.InvalidArgument, match="say why"):
        net.request_account("h3", reason="   ")


def test_pointers_on_every_node_where_you_have_an_account(grid: Grid, net: sk.Network) -> None:
    for node in ("h1", "h2"):
        try:
            net.login(node)
        except sk.AuthenticationError:
            account(grid, net, node)
    with pytest.warns(UserWarning, match=r"left out: h3 \(no account: net.request_account\('h3'"):
        ptrs = net.datasets.pointers("births", asset="records")
    assert sorted(ptrs) == ["h1", "h2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tagged = net.datasets.pointers("birth-records")  # by tag (its one asset)
    assert sorted(tagged) == ["h1", "h2"]
    with pytest.raises(sk.NotFound, match="no dataset named or tagged 'nothing-like-it'"):
        net.datasets.pointers("nothing-like-it")


def test_one_cell_on_several_nodes_sends_to_all_before_waiting(grid: Grid, net: sk.Network) -> None:
    clients = {}
    for node in ("h1", "h2"):
        try:
            clients[node] = net.login(node)
        except sk.AuthenticationError:
            clients[node] = account(grid, net, node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ptrs = net.datasets.pointers("births", asset="records")
    order: list[str] = []
    with spied(clients, order):
        batching.set_auto(True)
        try:
            means = {node: p["weight"].mean() for node, p in ptrs.items()}  # one "cell"
            batching.flush_all()
        finally:
            batching.set_auto(False)
    assert sorted(order[:2]) == ["send h1", "send h2"] and sorted(order[2:]) == ["wait h1", "wait h2"], order
    assert sorted(means) == ["h1", "h2"] and all(m.private for m in means.values())
    order.clear()
    with spied(clients, order):  # the same with explicit batches, one inside the other
        with clients["h1"].batch(), clients["h2"].batch():
            sums = {node: p["weight"].sum() for node, p in ptrs.items()}
    assert sorted(order[:2]) == ["send h1", "send h2"] and sorted(order[2:]) == ["wait h1", "wait h2"], order
    assert all(not x.pending for x in sums.values())
    # failures on two nodes: one error that names each node and its message
    batching.set_auto(True)
    try:
        for p in ptrs.values():
            p["no_such_column"].sum()
        with pytest.raises(sk.CompositeError) as e:
            batching.flush_all()
    finally:
        batching.set_auto(False)
    assert sorted(e.value.errors) == ["h1", "h2"]
    assert "2 nodes failed" in str(e.value) and "h1:" in str(e.value) and "no_such_column" in str(e.value)


# ---------------------------------------------------------------- faults: offline nodes, the gateway down


def test_a_node_that_stops_is_shown_offline_never_dropped(grid: Grid, tmp_path: Path) -> None:
    node = sk.start_node(tmp_path / "flaky", name="flaky", settings=HEARTBEAT)
    with node.login() as owner:
        owner.datasets.upload("flaky-data", assets={"x": pd.DataFrame({"a": [1.0]})}, tags=["#flaky"])
        owner.network.join(grid.connection)
    grid.admit("flaky")
    with grid.net() as net:
        wait_until(lambda: [h.online for h in net.datasets.search("flaky")] == [True], what="flaky online")
        node.stop()
        wait_until(lambda: [h.online for h in net.datasets.search("flaky")] == [False], what="flaky offline")
        member = next(n for n in net.nodes if n.name == "flaky")
        assert not member.online and member.datasets == 1  # still listed, shown offline
        with pytest.raises(sk.NotFound, match=r"no pointer to 'flaky-data' on grid: flaky \(offline\)"):
            net.datasets.pointers("flaky-data")
        node = sk.start_node(tmp_path / "flaky", name="flaky", settings=HEARTBEAT)  # it comes back by itself
        wait_until(lambda: [h.online for h in net.datasets.search("flaky")] == [True], what="flaky back online")
        with node.login() as owner:
            owner.network.leave()
    node.stop()


def test_the_gateway_down_and_back(tmp_path: Path) -> None:
    gw = sk.start_gateway(tmp_path / "g", name="g", auto_admit=True, settings={"offline_after_s": 1.5})
    node = sk.start_node(tmp_path / "n", name="n", settings=HEARTBEAT)
    keys = tmp_path / "keys"
    key, pub = sk.write_keypair(sk.generate_keypair("alice"), keys)
    try:
        owner = node.login()
        owner.users.add("alice", role="data_scientist", public_key=pub)
        owner.datasets.upload("d", assets={"t": pd.DataFrame({"a": [1.0, 2.0]})})
        owner.network.join(gw.connection_file)
        net = sk.connect_network(gw.connection_file, key=key, timeout=3)
        wait_until(lambda: len(net.datasets.search("d")) == 1)
        alice = net.login("n")
        gw.stop()
        with pytest.raises(sk.NodeUnavailable, match=r"the gateway g is not answering.*still work: net.clients"):
            net.datasets.search("d")
        ptr = alice.datasets["d"]["t"]
        assert ptr["a"].sum().private  # the node serves as before
        status = wait_until(lambda: owner.network.status() if owner.network.status()["error"] else None)
        assert "not answering" in status["error"] or "did not answer" in status["error"]
        owner.datasets.upload("e", assets={"t": pd.DataFrame({"a": [3.0]})})  # published once it is back
        port = int(net.address.rsplit(":", 1)[1])  # a gateway serves on its own port, as nodes know it
        gw = sk.start_gateway(tmp_path / "g", port=port, auto_admit=True, settings={"offline_after_s": 1.5})
        wait_until(lambda: len(net.datasets.search("e")) == 1, what="the node to publish after the gateway's restart")
        assert wait_until(lambda: not owner.network.status()["error"])
        net.close()
        owner.close()
    finally:
        node.stop()
        gw.stop()


def test_membership_and_account_requests_survive_restarts(tmp_path: Path) -> None:
    gw = sk.start_gateway(tmp_path / "g", name="g", auto_admit=True, settings={"offline_after_s": 1.5})
    node = sk.start_node(tmp_path / "n", name="n", settings=HEARTBEAT)
    key = sk.write_keypair(sk.generate_keypair("alice"), tmp_path / "keys")[0]
    try:
        with node.login() as owner:
            owner.datasets.upload("d", assets={"t": pd.DataFrame({"a": [1.0]})})
            owner.network.join(gw.connection_file)
        net = sk.connect_network(gw.connection_file, key=key)
        wait_until(lambda: len(net.datasets.search("d")) == 1)
        node.kill()  # a crash: the account request waits at the gateway
        req = net.request_account("n", reason="study", wait=0.5)
        assert req.status == "forwarding"
        node = sk.start_node(tmp_path / "n", name="n", settings=HEARTBEAT)  # rejoins by itself
        assert wait_until(lambda: req.refresh().status == "filed", what="the node to file the request")
        node.kill()
        node = sk.start_node(tmp_path / "n", name="n", settings=HEARTBEAT)
        with node.login() as owner:
            (filed,) = [r for r in owner.requests if r.kind == "account"]  # it survived the crash
            assert owner.network.status()["joined"]
            filed.approve("ok")
        assert req.wait(timeout=15).status == "approved"
        assert net.login("n").user == "alice"
        net.close()
    finally:
        node.stop()
        gw.stop()
