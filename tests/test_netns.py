"""tests/netns.py: real nodes on hosts of a private namespace LAN, reachable only from that LAN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from netns import Lan, LanError, LanNode, ip, ip_binary, list_namespaces, namespace_pids, pid_alive, serve_node

HOSTS = ["gateway", "h1", "h2", "h3", "sci"]
PORT = 5555

# Says what a TCP peer sends first: "zmtp" for ZeroMQ's greeting signature (0xFF, 8 bytes, 0x7F:
# libzmq sends it on connect, before CURVE), else what happened. Run here and inside namespaces.
GREETING = """
import socket

def greeting(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            got = b""
            while len(got) < 10:
                chunk = s.recv(10 - len(got))
                if not chunk:
                    return f"closed after {got!r}"
                got += chunk
    except TimeoutError:
        return "timed out"
    except OSError as e:
        return f"refused: {e}"
    return "zmtp" if got[0] == 0xFF and got[9] == 0x7F else f"not zmtp: {got!r}"
"""


# A process that ignores SIGTERM (so only SIGKILL ends it), and one that leaves a child in a session
# of its own (killing the process group does not reach it), which holds the same stdout or none.
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
)
ESCAPES = "import subprocess; child = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
ESCAPES_QUIETLY = ESCAPES.replace("True)", "True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)")


def greeting(host: str, port: int, timeout: float) -> str:
    """``GREETING``'s function, run in this (the root) namespace."""
    scope: dict[str, object] = {}
    exec(GREETING, scope)
    return scope["greeting"](host, port, timeout)  # type: ignore[operator, no-any-return]


def root_network() -> dict[str, str]:
    """The root namespace's interfaces, addresses and routes, to show the LAN adds nothing there."""
    return {
        "links": " ".join(sorted(line.split(":")[1].strip() for line in ip("-o", "link").splitlines())),
        "addresses": ip("-o", "addr"),
        "routes": ip("route") + ip("-6", "route"),
    }


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    """One LAN for the module's tests (skipped where the machine cannot make namespaces)."""
    need_namespaces()
    with Lan(HOSTS) as lan:
        yield lan


@pytest.fixture(scope="module")
def node(lan: Lan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanNode]:
    """Node h1, made in the root namespace (files only) and served inside namespace h1."""
    node = serve_node(lan, "h1", tmp_path_factory.mktemp("netns") / "h1", port=PORT)
    yield node
    assert node.stop() == 0, node.log.read_text()
    assert "stopped" in node.log.read_text()


def need_namespaces() -> None:
    """Skip the test where this machine cannot make a LAN, with the reason."""
    reason = Lan.unavailable()
    if reason:
        pytest.skip(reason)


def test_each_host_has_its_own_namespace_and_one_address_in_the_lan(lan: Lan) -> None:
    """Host i is .10+i of one /24, alone in its namespace with lo and eth0 up and one route."""
    assert set(lan.namespaces) <= set(list_namespaces())
    for i, host in enumerate(HOSTS):
        assert lan.address(host) == str(lan.network.network_address + 10 + i)
        ns = lan.namespace(host)
        links = {}
        for line in ip("-n", ns, "-br", "-4", "addr").splitlines():
            name, state, *addresses = line.split()
            links[name.split("@")[0]] = (state, addresses)
        assert links == {"lo": ("UNKNOWN", ["127.0.0.1/8"]), "eth0": ("UP", [f"{lan.address(host)}/24"])}
        assert ip("-n", ns, "-4", "route").split()[0] == str(lan.network)
        assert ip("-n", ns, "-4", "route").count("\n") == 1  # no default route: nowhere else to go


def test_a_scientist_on_another_host_uploads_and_computes_on_the_node(lan: Lan, node: LanNode) -> None:
    """From namespace sci: login with the connection file, upload a DataFrame, sum through a pointer."""
    code = f"""
import json
import pandas as pd
import syft_kernel as sk
c = sk.login({str(node.connection_file)!r}, key={str(node.owner_key)!r})
c.datasets.upload("d", assets={{"t": pd.DataFrame({{"x": [1, 2, 3, 4], "y": [0.5, 1.5, 2.5, 3.5]}})}})
p = c.datasets["d"]["t"]
print(json.dumps({{
    "address": c.address, "node": c.node_name, "role": c.role, "datasets": list(c.datasets),
    "sum": int(p["x"].sum().get()), "mean": float((p["y"] * 2).mean().get()),
}}))
c.close()
"""
    done = lan.run_python("sci", code, timeout=60, cwd=node.folder.parent)  # the installed package
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {
        "address": f"tcp://{lan.address('h1')}:{PORT}",
        "node": "h1",
        "role": "owner",
        "datasets": ["d"],
        "sum": 10,
        "mean": 4.0,
    }


def test_the_node_answers_every_host_of_the_lan_and_not_the_root_namespace(lan: Lan, node: LanNode) -> None:
    """ZeroMQ's greeting comes back to the LAN's hosts; from the test process the address leads
    elsewhere (no route, or here the default route, to a proxy that accepts any TCP connection)."""
    address = lan.address("h1")
    code = GREETING + f"\nprint(greeting({address!r}, {PORT}, 5.0))"
    for host in ("gateway", "h2", "h3", "sci", "h1"):
        done = lan.run_python(host, code, timeout=30)
        assert (done.returncode, done.stdout.strip()) == (0, "zmtp"), (host, done.stderr)
    started = time.monotonic()
    assert greeting(address, PORT, 1.0) != "zmtp"
    assert time.monotonic() - started < 5
    assert address not in ip("-o", "addr")


def test_exit_stops_every_process_and_deletes_every_namespace() -> None:
    """After the ``with``: no namespace of the LAN is listed, and no process started in it lives."""
    need_namespaces()
    with Lan(["a", "b"], term_timeout=0.5) as lan:
        names = lan.namespaces
        polite = lan.popen("a", ["sleep", "600"])
        stubborn = lan.popen("b", [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True)
        # a grandchild in a session of its own: only the sweep of the namespace's pids finds it
        spawned = lan.run_python("b", ESCAPES_QUIETLY + "print(child.pid)")
        grandchild = int(spawned.stdout)
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        assert pid_alive(grandchild)
        assert grandchild in namespace_pids(lan.namespace("b"))
    assert not set(names) & set(list_namespaces())
    assert polite.returncode == -signal.SIGTERM and stubborn.returncode == -signal.SIGKILL
    assert not pid_alive(grandchild)


def test_the_root_namespace_gets_no_interface_address_or_route() -> None:
    """The test process's network is the same before, during and after a LAN."""
    need_namespaces()
    before = root_network()
    with Lan(["a", "b", "c"]) as lan:
        assert root_network() == before
        assert lan.run("a", ["ip", "-o", "link"]).stdout.count("\n") == 2  # lo and eth0 only
    assert root_network() == before


def test_leftovers_of_a_dead_run_go_and_a_live_run_keeps_its_namespaces() -> None:
    """At start a LAN deletes ``sk<pid>-…`` namespaces of dead pids, with what runs in them."""
    need_namespaces()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs, as after a crash
    alive = subprocess.Popen(["sleep", "600"])
    dead_ns, live_ns = [f"sk{gone.pid}-1", f"sk{gone.pid}-1-h1"], f"sk{alive.pid}-1"
    orphan = None
    try:
        for ns in [*dead_ns, live_ns]:
            ip("netns", "add", ns)
        orphan = subprocess.Popen(
            [str(ip_binary()), "netns", "exec", dead_ns[1], "sleep", "600"], start_new_session=True
        )
        deadline = time.monotonic() + 10
        while orphan.pid not in namespace_pids(dead_ns[1]) and time.monotonic() < deadline:
            time.sleep(0.02)
        with Lan(["a"]):
            listed = list_namespaces()
            assert not set(dead_ns) & set(listed) and live_ns in listed
        assert orphan.wait(5) == -signal.SIGKILL
    finally:
        for p in (alive, orphan):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
        for ns in [*dead_ns, live_ns]:
            ip("netns", "delete", ns, check=False)


def test_a_command_over_its_time_is_killed(lan: Lan) -> None:
    """``run_python`` past its timeout raises ``TimeoutExpired`` in bounded time, even when an
    escaped grandchild keeps its pipes open; the command itself is dead."""
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        lan.run_python("h2", ESCAPES + "import time; time.sleep(60)", timeout=0.5)
    assert time.monotonic() - started < 5
    assert lan.processes[-1].poll() is not None


def test_unavailable_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root or no ``ip``: a reason for ``pytest.skip``, found without touching the network."""
    import netns

    monkeypatch.setattr(Lan, "_unavailable", None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in (Lan.unavailable() or "")
    monkeypatch.setattr(Lan, "_unavailable", None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns, "ip_binary", lambda: None)
    assert "`ip`" in (Lan.unavailable() or "")
    with pytest.raises(LanError, match="`ip`"):
        Lan(["a"]).__enter__()


@pytest.mark.parametrize("hosts", [[], ["H1"], ["a", "a"], ["a.b"], ["../x"], ["x" * 33]])
def test_bad_host_names_are_refused(hosts: list[str]) -> None:
    """Host names become namespace names: lower-case words only, each once."""
    with pytest.raises(ValueError):
        Lan(hosts)
