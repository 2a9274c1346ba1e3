"""The network on real hosts: a gateway and three nodes, each in its own network namespace with
its own address, and a scientist on a fifth host who reaches them only over those addresses."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from netns import CLI, Lan, LanGateway, LanNode, list_namespaces, serve_gateway, serve_node

from syft_kernel.sample_data import birth_records

HOSTS = ["gateway", "h1", "h2", "h3", "sci"]
NODES = ("h1", "h2", "h3")
ROWS = {"h1": 300, "h2": 400, "h3": 500}  # a different total on each node: each answer is its own node's
GATEWAY_PORT, NODE_PORT = 5600, 5555
NODE_SETTINGS = ["--NodeConfig.heartbeat_s=0.3"]
GATEWAY_SETTINGS = ["--GatewayConfig.offline_after_s=1.5"]
STEP_TIMEOUT = 30.0  # seconds for any one step of a process on the LAN

T = TypeVar("T")


def script(body: str, **cfg: Any) -> str:
    """Python source for ``run_python``: ``CFG`` holds ``cfg`` (JSON), then ``body``."""
    return f"import json\nCFG = json.loads({json.dumps(cfg)!r})\n" + textwrap.dedent(body)


def last_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a script printed last; its stderr if it failed."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def on_each(fn: Callable[[str], T], names: tuple[str, ...] = NODES) -> dict[str, T]:
    """``fn(name)`` for each name at once (each is a process in its own namespace)."""
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        futures = {n: pool.submit(fn, n) for n in names}
        return {n: f.result() for n, f in futures.items()}


# Owner work, run on each node's own host: upload the month's births and join the network.
JOIN = """
import syft_kernel as sk
from syft_kernel.sample_data import birth_records
with sk.login(CFG["connection"], key=CFG["key"]) as owner:
    owner.datasets.upload(
        "births",
        assets={"records": birth_records(month=2, rows=CFG["rows"])},
        description=f"Birth records of {CFG['name']}, February",
        tags=["#February", "#birth-records"],
    )
    status = owner.network.join(CFG["gateway"])
    print(json.dumps({"address": owner.address, "status": status["status"], "gateway": status["gateway"]}))
"""

# The owner approves the one pending request of a kind, which must be the one the scientist filed.
APPROVE = """
import syft_kernel as sk
with sk.login(CFG["connection"], key=CFG["key"]) as owner:
    (req,) = [r for r in owner.requests if r.kind == CFG["kind"] and r.status == "pending"]
    assert req.id == CFG["id"], (req.id, CFG["id"])
    req.approve("ok")
    print(json.dumps({"id": req.id, "requester": req.requester, "status": req.refresh().status}))
"""

# The scientist, in one session on host sci; prints one JSON line per step, then waits for "go".
SCIENTIST = """
import sys
import time
import syft_kernel as sk
from syft_kernel import batch

def say(**out):
    print(json.dumps(out), flush=True)
    assert sys.stdin.readline() == "go\\n"

key, _ = sk.write_keypair(sk.generate_keypair("alice"), CFG["keys"])
net = sk.connect_network(CFG["gateway"], key=key)
deadline = time.monotonic() + 20
while True:  # the nodes publish at their next heartbeat after the operator admits them
    hits = net.datasets.search("", tags=["#February"])
    nodes = net.nodes
    if len(hits) == 3 and len(nodes) == 3 and all(n.online for n in nodes) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
accounts = {n: net.request_account(n, reason="the February birth study") for n in CFG["nodes"]}
say(
    gateway=net.address,
    name=net.name,
    nodes=[{"name": n.name, "online": n.online, "addresses": n.addresses} for n in nodes],
    hits=[{"node": h.node, "name": h.name, "tags": h.tags, "online": h.online} for h in hits],
    accounts={n: {"status": r.status, "request": r.request_id} for n, r in accounts.items()},
)
for r in accounts.values():
    r.wait(timeout=20)
ptrs = net.datasets.pointers("births", asset="records")
batch.set_auto(True)  # what a syft-kernel cell does: one batch on every node, sent together
try:
    sums = {n: p["weight"].sum() for n, p in ptrs.items()}
    batch.flush_all()
finally:
    batch.set_auto(False)
asks = {n: s.request(reason="the February total birth weight") for n, s in sums.items()}
say(
    accounts={n: r.status for n, r in accounts.items()},
    logins={n: {"address": c.address, "user": c.user, "role": c.role} for n, c in net.clients.items()},
    requests={n: r.id for n, r in asks.items()},
)
for r in asks.values():
    r.wait(timeout=20)
say(sums={n: float(s.get()) for n, s in sums.items()})
net.close()
"""

# The scientist again, later: how the gateway shows the nodes while one of them is down.
OFFLINE = """
import time
import syft_kernel as sk
with sk.connect_network(CFG["gateway"], key=CFG["key"]) as net:
    deadline = time.monotonic() + 15
    while True:
        online = {n.name: n.online for n in net.nodes}
        if not online[CFG["stopped"]] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    hits = {h.node: h.online for h in net.datasets.search("births")}
    print(json.dumps({"online": online, "hits": hits}))
"""


class Session:
    """A Python process on one host, driven a step at a time: it prints a JSON line, then reads
    ``go`` before the next step."""

    def __init__(self, lan: Lan, host: str, code: str, cwd: Path) -> None:
        self.log = cwd / f"{host}-session.log"
        with self.log.open("w") as err:
            self.proc = lan.popen(
                host,
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=cwd,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def step(self, go: bool = True, timeout: float = STEP_TIMEOUT) -> Any:
        """Let the process go on (unless it is the first step); the JSON it prints next."""
        assert self.proc.stdin is not None
        if go:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer in {timeout} s:\n{self.log.read_text()}") from None
        if line is None:
            raise AssertionError(f"exited ({self.proc.wait(5)}):\n{self.log.read_text()}")
        return json.loads(line)

    def finish(self, timeout: float = STEP_TIMEOUT) -> int:
        """Let the last step go on; the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        return self.proc.wait(timeout)


@dataclass
class Grid:
    """The LAN with its gateway and three member nodes (each uploaded and joined by its owner)."""

    lan: Lan
    root: Path
    gateway: LanGateway
    nodes: dict[str, LanNode]
    joined: dict[str, Any] = field(default_factory=dict)

    @property
    def sci(self) -> Path:
        """The scientist's folder: their keys and the gateway's connection file they were given."""
        return self.root / "sci"

    def tcp(self, host: str, port: int = NODE_PORT) -> str:
        return f"tcp://{self.lan.address(host)}:{port}"

    def owner(self, node: str, code: str, **cfg: Any) -> Any:
        """Run ``code`` as ``node``'s owner on ``node``'s own host; the JSON it prints."""
        n = self.nodes[node]
        cfg |= {"name": node, "connection": str(n.connection_file), "key": str(n.owner_key)}
        return last_json(self.lan.run_python(node, script(code, **cfg), timeout=STEP_TIMEOUT, cwd=self.root))

    def operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``syft-kernel gateway ARGS --dir …``, run on the gateway's host."""
        return self.lan.run("gateway", [*CLI, "gateway", *args, "--dir", str(self.gateway.folder)], cwd=self.root)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    """The gateway on host gateway (the operator admits nodes), nodes h1-h3 on their hosts."""
    reason = Lan.unavailable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("hosts")
    with Lan(HOSTS) as lan:
        names = lan.namespaces
        gateway = serve_gateway(lan, "gateway", root / "grid", port=GATEWAY_PORT, settings=GATEWAY_SETTINGS)
        nodes = on_each(lambda n: serve_node(lan, n, root / n, port=NODE_PORT, settings=NODE_SETTINGS))
        g = Grid(lan, root, gateway, nodes)
        g.sci.mkdir()
        shutil.copy(gateway.connection_file, g.sci / "grid.json")  # handed to the scientist
        g.joined = on_each(lambda n: g.owner(n, JOIN, rows=ROWS[n], gateway=str(gateway.connection_file)))
        for n in NODES:
            admitted = g.operator("admit", n)
            assert admitted.returncode == 0, admitted.stderr
        yield g
        for node in nodes.values():
            assert node.stop() == 0, node.log.read_text()
            assert "stopped" in node.log.read_text()
        assert gateway.stop() == 0, gateway.log.read_text()
        assert "stopped" in gateway.log.read_text()
    assert not set(names) & set(list_namespaces())
    assert all(p.poll() is not None for p in lan.processes)


def test_the_gateway_and_each_node_serve_on_their_own_host_address(grid: Grid) -> None:
    """Connection files name only the hosts' LAN addresses (TCP: nodes serve with --no-ipc);
    each owner, on its node's host, joined over them and waited for the operator."""
    gw = json.loads(grid.gateway.connection_file.read_text())
    assert (gw["kind"], gw["addresses"]) == ("gateway", [grid.tcp("gateway", GATEWAY_PORT)])
    for n in NODES:
        info = json.loads(grid.nodes[n].connection_file.read_text())
        assert info["addresses"] == [grid.tcp(n)]  # no ipc:// address
        assert grid.joined[n] == {"address": grid.tcp(n), "status": "pending", "gateway": "grid"}
    listed = grid.operator("nodes").stdout.splitlines()
    assert [line.split()[0] for line in listed] == list(NODES)
    for n, line in zip(NODES, listed):
        assert "pending" not in line and grid.tcp(n) in line


def test_a_scientist_on_another_host_finds_the_data_gets_accounts_and_sums_on_all_three(grid: Grid) -> None:
    """From host sci only: the gateway lists the three nodes at their hosts' addresses, a tag
    search finds their births, each owner (on their own host) approves an account and a release,
    and one batch sums the weights on all three nodes."""
    cfg = {"gateway": str(grid.sci / "grid.json"), "keys": str(grid.sci / "keys"), "nodes": list(NODES)}
    sci = Session(grid.lan, "sci", script(SCIENTIST, **cfg), grid.sci)
    found = sci.step(go=False)
    assert (found["gateway"], found["name"]) == (grid.tcp("gateway", GATEWAY_PORT), "grid")
    assert found["nodes"] == [{"name": n, "online": True, "addresses": [grid.tcp(n)]} for n in NODES]
    assert sorted((h["node"], h["name"], h["online"]) for h in found["hits"]) == [(n, "births", True) for n in NODES]
    assert all("february" in " ".join(h["tags"]).lower() for h in found["hits"])
    assert all(a["status"] == "filed" for a in found["accounts"].values()), found["accounts"]

    approved = on_each(lambda n: grid.owner(n, APPROVE, kind="account", id=found["accounts"][n]["request"]))
    assert all(a["requester"] == "alice" and a["status"] == "approved" for a in approved.values()), approved

    logged_in = sci.step()
    assert logged_in["accounts"] == {n: "approved" for n in NODES}
    assert logged_in["logins"] == {
        n: {"address": grid.tcp(n), "user": "alice", "role": "data_scientist"} for n in NODES
    }
    released = on_each(lambda n: grid.owner(n, APPROVE, kind="object", id=logged_in["requests"][n]))
    assert all(r["status"] == "approved" for r in released.values()), released

    sums = sci.step()["sums"]
    assert sci.finish() == 0, sci.log.read_text()
    expected = {n: float(birth_records(month=2, rows=ROWS[n])["weight"].sum()) for n in NODES}
    assert sums == pytest.approx(expected, rel=1e-12)
    assert len(set(sums.values())) == 3


def test_a_node_that_stops_is_shown_offline_to_the_scientist(grid: Grid) -> None:
    """Stop h3 on its host: the gateway (offline after 1.5 s of silence) shows it offline, still
    listed; the other two stay online."""
    assert grid.nodes["h3"].stop() == 0
    started = time.monotonic()
    cfg = {"gateway": str(grid.sci / "grid.json"), "key": str(grid.sci / "keys" / "alice.key"), "stopped": "h3"}
    seen = last_json(grid.lan.run_python("sci", script(OFFLINE, **cfg), timeout=STEP_TIMEOUT, cwd=grid.sci))
    assert seen == {"online": {"h1": True, "h2": True, "h3": False}, "hits": {"h1": True, "h2": True, "h3": False}}
    assert time.monotonic() - started < 15
