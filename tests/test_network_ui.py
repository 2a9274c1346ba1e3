"""The network's UI against real processes: a gateway, three nodes and a scientist, shared by the
module's tests (in order: the last ones stop a node, then the gateway).

``DatasetSearch(net)`` headless (real handlers, ``button.click()``), an account request in the
owner's queue widget approved with a click, and the dashboard (REST + HTML through
pytest-jupyter's ``jp_fetch``) showing each node's network and its account requests.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures for this module only)
from test_network import wait_until

import syft_kernel as sk
from syft_kernel import Client
from syft_kernel.core.errors import AuthenticationError, InvalidArgument, NodeUnavailable
from syft_kernel.launcher import GatewayProcess, NodeProcess, start_gateway, start_node
from syft_kernel.network import Network
from syft_kernel.sample_data import birth_records
from syft_kernel.widgets import DatasetSearch, RequestQueue
from syft_kernel.widgets.common import esc


@dataclass
class Grid:
    root: Path
    gateway: GatewayProcess
    nodes: dict[str, NodeProcess]
    owners: dict[str, Client]
    alice_key: Path
    alice_public: str
    net: Network


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    """The gateway ``grid`` (its operator admits h1 and h2; h3 stays pending), h1 publishing its
    row counts, h2 not, and Alice connected to the network with no account anywhere."""
    root = tmp_path_factory.mktemp("netui")
    gateway = start_gateway(root / "grid", name="grid", settings={"offline_after_s": 2})
    nodes: dict[str, NodeProcess] = {}
    owners: dict[str, Client] = {}
    net = made = None
    try:
        for name in ("h1", "h2", "h3"):
            nodes[name] = start_node(root / "nodes" / name, name=name, settings={"heartbeat_s": 0.3})
            owners[name] = nodes[name].login()
        births = birth_records(month=2, rows=200)
        for name in ("h1", "h2"):
            owners[name].datasets.upload(
                "births", assets={"births": births}, description=f"February births at {name}", tags=["#February"]
            )
        owners["h2"].datasets.upload("scans", assets={"pixels": np.zeros((6, 4, 4))}, tags=["#scan"])
        owners["h1"].network.join(gateway.connection_file, public_rows=True)
        owners["h2"].network.join(gateway.connection_file)
        owners["h3"].network.join(gateway.connection_file)
        for name in ("h1", "h2"):
            subprocess.run(
                [sys.executable, "-m", "syft_kernel.cli", "gateway", "admit", name, "--dir", str(root / "grid")],
                check=True,
                capture_output=True,
                timeout=60,
            )
        pair = sk.generate_keypair("alice")
        key, _ = sk.write_keypair(pair, root / "keys")
        net = sk.connect_network(gateway.connection_file, key=key)
        wait_until(lambda: len(net.datasets.search()) == 3, what="three listings on the gateway")
        made = Grid(root, gateway, nodes, owners, key, pair.public, net)
        yield made
    finally:
        if net is not None:
            net.close()
        for owner in owners.values():
            owner.close()
        # together: a node whose gateway is gone takes up to ~10 s to stop (see the last test)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
            list(pool.map(lambda n: n.stop(30), nodes.values()))
        gateway.stop()
        if made is not None:
            made.gateway.stop()  # the last test starts it again


def node_cells(search: DatasetSearch) -> list[str]:
    """The node column's cells, top to bottom (six cells a row, after the header row)."""
    cells = search.table.children[6:]
    return [c.value for c in cells[0::6]]


def name_button(search: DatasetSearch, name: str, node: str) -> Any:
    return next(c for c in search.table.children if getattr(c, "node", None) == node and c.description == name)


# ---- DatasetSearch(net)
def test_network_search_shows_each_nodes_hits_with_their_node_and_state(grid: Grid) -> None:
    search = DatasetSearch(grid.net, query="births")
    assert "Datasets on the network grid" in search.children[0].value
    assert [c.value for c in search.table.children[:6]] == [
        f"<b>{h}</b>" for h in ("node", "name", "tags", "description", "assets", "online")
    ]
    assert search.total == 2 and sorted(h.node for h in search.results) == ["h1", "h2"]
    assert all("h1" in v or "h2" in v for v in node_cells(search))
    assert sum("syft-online" in c.value for c in search.table.children[11::6]) == 2  # a badge per hit

    name_button(search, "births", "h2").click()
    assert search.selected.node == "h2" and search.selected.name == "births"
    assert name_button(search, "births", "h2").button_style == "info"
    assert name_button(search, "births", "h1").button_style == ""
    detail = search.detail.value
    assert "on h2" in detail and "mother_id" in detail and "float64" in detail
    assert "8 columns (row count not public)" in detail  # h2 keeps its row counts private
    assert "net.request_account(&#x27;h2&#x27;" in detail  # Alice has no account yet: how to ask
    search.select("births", node="h1")
    assert "200 rows × 8 columns" in search.detail.value  # h1 made them public

    text = repr(search)
    assert "datasets on the network grid matching 'births'" in text
    assert "node" in text.splitlines()[1] and "state" in text.splitlines()[1]
    assert "h1" in text and "h2" in text and "online" in text and "selected: births on h1" in text

    with pytest.raises(InvalidArgument, match=r"several nodes \(h1, h2\)"):
        search.select("births")
    with pytest.raises(AuthenticationError, match=r"net.request_account\('h1'"):
        search.pointer()

    search.query.value = ""
    assert search.total == 3 and "#scan" in search.tag_hint.value  # the tags the hits carry
    search.tags.value = ["#scan"]  # the tag filter searches the network again
    assert [(h.node, h.name) for h in search.results] == [("h2", "scans")]
    search.select("scans")
    assert "? × 4 × 4, float64 (row count not public)" in search.detail.value


def test_search_results_display_as_the_network_widget(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    from syft_kernel import display as shown

    results = grid.net.datasets.search("births", tags=["#February"])
    seen: list[Any] = []
    monkeypatch.setattr(shown, "widgets_usable", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj, **_: seen.append(obj))
    results._ipython_display_()
    assert isinstance(seen[0], DatasetSearch) and seen[0].network is grid.net
    assert seen[0].query.value == "births" and list(seen[0].tags.value) == ["#February"]


def test_an_account_request_is_approved_with_a_click_and_the_key_logs_in(grid: Grid) -> None:
    owner = grid.owners["h1"]
    asked = grid.net.request_account("h1", reason="birth weight study")
    assert asked.status == "filed"
    request_id = asked.info["request"]
    queue = RequestQueue(owner, live=False)
    row = queue.row(request_id)
    words = f"account for alice (data_scientist), key {grid.alice_public[:8]}…, asked through the network grid"
    assert esc(words) in row.summary.value and "birth weight study" in row.summary.value
    assert row.code not in row.children  # its one-line "plan" is the summary already
    assert words in repr(owner.requests[request_id]) and words in repr(owner.requests)
    assert words in queue.text()
    assert owner.requests[request_id].account == {
        "name": "alice",
        "role": "data_scientist",
        "public_key": grid.alice_public,
        "signing_key": grid.net.key.sign_public,
        "gateway": "grid",
    }

    row.comment.value = "welcome"
    row.approve_button.click()  # signs the decision with the owner's key, like any request
    assert owner.requests[request_id].status == "approved"
    assert "is a data scientist here now" in queue.row(request_id).summary.value
    assert asked.wait(10).status == "approved"
    alice = grid.net.login("h1")
    assert alice.user == "alice" and alice.role == "data_scientist"

    search = DatasetSearch(grid.net, query="births")
    search.select("births", node="h1")  # logged in now: the mock preview shows
    assert "mock preview" in search.detail.value
    ptr = search.pointer("births")
    assert ptr.client is alice and "weight" in ptr.columns
    with pytest.raises(sk.PermissionDenied):
        ptr["weight"].sum().get()  # a pointer like any other: private values stay on the node
    assert search.dataset().name == "births"
    queue.close()


def test_a_new_account_request_appears_in_the_live_queue(grid: Grid) -> None:
    owner = grid.owners["h2"]
    queue = RequestQueue(owner)
    asked = grid.net.request_account("h2", reason="scans for a model")
    row = wait_until(
        lambda: next((r for r in queue.list.children if getattr(r, "request_id", "") == asked.info["request"]), None),
        what="the account request in the owner's live queue",
    )
    assert "asked through the network grid" in row.summary.value and not row.approve_button.disabled
    queue.close()


# ---- the dashboard
@pytest.fixture
def jp_server_config(grid: Grid) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"syft_kernel.extension": True}},
        "SyftExtension": {"nodes_dir": str(grid.root / "nodes")},
    }


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):  # type: ignore[no-untyped-def]
    return lambda *parts, **kwargs: jp_asyncio_loop.run_until_complete(jp_fetch(*parts, **kwargs))


def section(fetch: Callable[..., Any], node: str) -> str:
    return str(fetch("syft", "dashboard", "nodes", node).body.decode())


def test_the_dashboard_shows_each_nodes_network_and_its_account_requests(grid: Grid, fetch) -> None:  # type: ignore[no-untyped-def]
    pending = grid.owners["h2"].requests.list(status="pending", kind="account")
    assert len(pending) == 1  # asked in the test above
    request_id = pending[0].id

    status = json.loads(fetch("syft", "api", "nodes", "h2", "network").body)
    assert status["joined"] and status["gateway"] == "grid" and status["status"] == "admitted"
    assert [r["id"] for r in status["pending_accounts"]] == [request_id]

    page = fetch("syft", "dashboard").body.decode()
    assert page.count("<div class='network'") == 3
    h2 = section(fetch, "h2")
    assert "data-gateway='grid' data-status='admitted' data-online='yes'" in h2
    assert "On the network <b>grid</b>" in h2 and "last heard" in h2
    assert "Account requests waiting (1)" in h2 and f"href='#request-{request_id}'" in h2
    words = esc(f"account for alice (data_scientist), key {grid.alice_public[:8]}…, asked through the network grid")
    assert words in h2 and "scans for a model" in h2
    assert f"id='request-{request_id}'" in h2 and "data-kind='account'" in h2
    assert f"<button class='approve' data-request='{request_id}'>" in h2

    h1 = section(fetch, "h1")
    assert "No account requests waiting." in h1 and "row counts public: every dataset&#x27;s" in h1
    h3 = section(fetch, "h3")
    assert "data-status='pending'" in h3 and "0 dataset(s) to list once admitted" in h3
    assert "1 of 1 dataset(s) listed" in h1
    assert "waits for the operator of grid to admit it (syft-kernel gateway admit h3)" in h3

    decided = json.loads(
        fetch(
            "syft",
            "api",
            "nodes",
            "h2",
            "requests",
            request_id,
            "approve",
            method="POST",
            body=json.dumps({"comment": "from the dashboard"}),
        ).body
    )
    assert decided["status"] == "approved" and decided["kind"] == "account"
    wait_until(lambda: grid.net.login("h2").user == "alice", what="alice logging in to h2")
    assert "No account requests waiting." in section(fetch, "h2")


def test_the_dashboards_notices_for_the_network_are_sentences(fetch) -> None:  # type: ignore[no-untyped-def]
    from syft_kernel.extension.dashboard import notice_text

    assert notice_text("account_approved", requester="alice", node="h1") == (
        "You approved the account for alice on h1: alice can log in to h1 now."
    )
    assert notice_text("network_down", node="h1", gateway="grid", error="the gateway grid is not answering") == (
        "Node h1 cannot reach its gateway grid: the gateway grid is not answering. "
        "It keeps serving its users and tries again at every heartbeat."
    )
    js = fetch("static", "syft_kernel.extension", "dashboard.js").body.decode()
    assert "account_approved" in js and "dataset.kind" in js


# ---- a node stops, then the gateway
def test_a_stopped_node_shows_offline_and_says_it_is_not_answering(grid: Grid) -> None:
    search = DatasetSearch(grid.net, query="births")
    grid.nodes["h2"].stop()

    def h2_offline() -> bool:
        search.refresh()
        return any(h.node == "h2" and not h.online for h in search.results)

    wait_until(h2_offline, timeout=15, what="h2 offline on the gateway")
    cells = search.table.children[6:]
    rows = [cells[i : i + 6] for i in range(0, len(cells), 6)]
    h2_row = next(r for r in rows if "h2" in r[0].value)
    h1_row = next(r for r in rows if "h1" in r[0].value)
    assert "syft-offline" in h2_row[5].value and "offline" in h2_row[5].value
    assert "color:#999" in h2_row[0].value and "syft-offline" in h2_row[1]._dom_classes  # greyed
    assert "syft-online" in h1_row[5].value and "color:#999" not in h1_row[0].value
    h2_row[1].click()
    assert "h2 is not answering (offline on grid, last heard" in search.detail.value
    assert "search.pointer(" not in search.detail.value  # nothing to take from a node that is away
    with pytest.raises(NodeUnavailable, match="h2 is not answering"):
        search.pointer()
    assert "offline" in repr(search)


def test_the_dashboard_says_when_the_gateway_is_not_answering(grid: Grid, fetch) -> None:  # type: ignore[no-untyped-def]
    grid.gateway.stop()
    search = DatasetSearch(grid.net)  # the scientist's search says so within seconds, and never hangs
    assert "the gateway grid did not answer" in search.message.value and "Refresh" in search.message.value
    status = wait_until(
        lambda: (s := grid.owners["h1"].network.status()).error and s,
        timeout=40,
        what="h1 noticing its gateway stopped",
    )
    assert "grid" in status.error
    h1 = section(fetch, "h1")
    assert "data-online='no'" in h1 and "class='error network-error'" in h1
    assert "Node h1 cannot reach its gateway grid:" in h1 and "It keeps serving its users" in h1
    assert "Datasets" in h1 and "Requests" in h1  # the node's own sections are unaffected

    port = int(next(a for a in grid.gateway.connection["addresses"] if a.startswith("tcp://")).rsplit(":", 1)[1])
    grid.gateway = start_gateway(grid.root / "grid", name="grid", port=port, settings={"offline_after_s": 2})
    wait_until(lambda: not grid.owners["h1"].network.status().error, timeout=30, what="h1 hearing its gateway again")
    assert "data-online='yes'" in section(fetch, "h1") and "network-error" not in section(fetch, "h1")
