"""pytest fixtures for testing against real, throwaway data nodes (``pytest11`` plugin).

``syft_node`` serves a fresh node from a temporary folder on a free loopback port and stops it
at teardown; ``make_user`` registers a data scientist and returns their key file.

A test marked ``@pytest.mark.syft_shared_node`` (or a whole module, with ``pytestmark``) gets,
as ``syft_node``, one node shared by the module's tests with the same mark: for tests that only
read from the node, or whose writes do not meet. ``@pytest.mark.syft_shared_node("empty")``
names another shared node of the module; ``@pytest.mark.syft_own_node`` gives one test of such
a module a fresh node again. On a shared node ``make_user`` adds each name once and
hands later tests the same key; ``syft_node_memo`` is a dict kept as long as the node, for
fixtures that load a node once (``memo.setdefault(...)``).

The plugin watches every node that ``syft_kernel.start_node`` starts while tests run, and every
client its fixtures log in:

* a test fails when a node it uses exits with a non-zero code (a crash) that nobody asked for
  (``NodeProcess.kill()``, or a test marked ``@pytest.mark.syft_node_may_exit``);
* a failing test's report carries the tail of the log of each node it used;
* teardown is bounded: a node that does not stop within ``STOP_TIMEOUT`` seconds of SIGTERM is
  killed (and the test's teardown fails, with the log); nodes a test started and left running
  are stopped after it; whatever is still running at the end of the session is stopped.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import launcher
from .core.keys import generate_keypair, write_keypair
from .launcher import NodeProcess

#: Seconds a node gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: How much of a node's log a failing test's report carries.
LOG_TAIL = 12_000


@dataclass
class _Tracked:
    node: NodeProcess
    nodeid: str  # the test during which it started
    phase: str  # setup, call or teardown
    module: str
    reported: bool = False  # its crash was reported once already
    memo: dict[str, Any] = field(default_factory=dict)


class SyftTracker:
    """Every node started (through ``launcher.start_node``) and client logged in during the session."""

    def __init__(self) -> None:
        self.nodes: list[_Tracked] = []
        self.clients: dict[str, list[Any]] = {}  # nodeid -> clients logged in for that test
        self.item: pytest.Item | None = None
        self.phase = ""

    # ---- tracking
    def started(self, node: NodeProcess) -> None:
        # a node started by a test belongs to it; one started in a fixture's setup may be the
        # module's (or the session's): later tests of the module use it too
        item = self.item
        module = "-" if self.phase == "call" else _module(item) if item else ""
        self.nodes.append(_Tracked(node, item.nodeid if item else "", self.phase, module))

    def tracked(self, node: NodeProcess) -> _Tracked:
        for t in self.nodes:
            if t.node is node:
                return t
        t = _Tracked(node, self.item.nodeid if self.item else "", self.phase, "")
        self.nodes.append(t)
        return t

    def login(self, node: NodeProcess, key: Any = None, **kwargs: Any) -> Any:
        """``node.login(...)``, closed after the current test at the latest."""
        client = node.login(key, **kwargs)
        self.clients.setdefault(self.item.nodeid if self.item else "", []).append(client)
        return client

    def close_clients(self, nodeid: str) -> None:
        for client in self.clients.pop(nodeid, []):
            try:
                client.close()
            except Exception:  # noqa: S110  (a client of a dead node may fail to close: fine)
                pass

    def used_by(self, item: pytest.Item) -> list[_Tracked]:
        """The nodes a test may use: those it started and those of its module (or session)."""
        module = _module(item)
        return [t for t in self.nodes if t.nodeid == item.nodeid or t.module in (module, "")]

    # ---- stopping
    def stop(self, node: NodeProcess, timeout: float = STOP_TIMEOUT) -> str | None:
        """Stop within ``timeout`` (then SIGKILL); a problem to report, or None."""
        if node.proc.poll() is not None:
            return None
        try:
            code = node.stop(timeout)
        except Exception as err:  # even SIGKILL did not end it in time
            return f"node {node.folder} (pid {node.proc.pid}) could not be stopped: {err!r}"
        if code == -signal.SIGKILL:
            return f"node {node.folder} did not stop within {timeout:.0f}s of SIGTERM: killed"
        return None


def crashed(t: _Tracked) -> bool:
    code = t.node.proc.poll()
    return code is not None and code != 0 and not t.node.killed


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _log_tail(node: NodeProcess) -> str:
    try:
        text = node.log()
    except OSError as err:
        return f"(log unreadable: {err})"
    return text if len(text) <= LOG_TAIL else "…" + text[-LOG_TAIL:]


_KEY = pytest.StashKey[SyftTracker]()


def _tracker(config: pytest.Config) -> SyftTracker:
    return config.stash[_KEY]


# ---------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "syft_shared_node(name='default'): the test's syft_node is "
        "shared by the module's tests with the same mark and name",
    )
    config.addinivalue_line(
        "markers", "syft_own_node: a fresh syft_node for this test, in a module marked syft_shared_node"
    )
    config.addinivalue_line(
        "markers", "syft_node_may_exit: the test makes a node exit on purpose (not reported as a crash)"
    )
    tracker = SyftTracker()
    config.stash[_KEY] = tracker
    launcher.on_start.append(tracker.started)
    config.add_cleanup(
        lambda: launcher.on_start.remove(tracker.started) if tracker.started in launcher.on_start else None
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    tracker = session.config.stash.get(_KEY, None)
    if tracker is None:
        return
    for t in tracker.nodes:
        tracker.stop(t.node)
    for nodeid in list(tracker.clients):
        tracker.close_clients(nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    tracker = _tracker(item.config)
    tracker.item, tracker.phase = item, "setup"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    tracker = _tracker(item.config)
    tracker.item, tracker.phase = item, "call"
    return (yield)


_PROBLEMS = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    tracker = _tracker(item.config)
    tracker.item, tracker.phase = item, "teardown"
    try:
        return (yield)
    finally:
        # what the test logged in and started and left running ends with it
        tracker.close_clients(item.nodeid)
        problems = item.stash.setdefault(_PROBLEMS, [])
        for t in tracker.nodes:
            if t.nodeid == item.nodeid and t.phase == "call":
                problem = tracker.stop(t.node)
                if problem:
                    problems.append(problem)
        tracker.nodes = [
            t
            for t in tracker.nodes  # forget this test's own nodes once they ended
            if not (t.module == "-" and t.nodeid == item.nodeid and t.node.proc.poll() is not None)
        ]
        tracker.item, tracker.phase = None, ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    tracker = item.config.stash.get(_KEY, None)
    if tracker is None:
        return report
    used = tracker.used_by(item)
    problems: list[str] = []
    if call.when == "teardown":
        problems += item.stash.get(_PROBLEMS, [])
    if item.get_closest_marker("syft_node_may_exit") is not None:
        for t in used:  # its exits were on purpose: not a later test's crash either
            t.reported = t.reported or crashed(t)
    else:
        for t in used:
            if crashed(t) and not t.reported:
                t.reported = True
                problems.append(
                    f"node {t.node.folder} (pid {t.node.proc.pid}) exited with code {t.node.proc.returncode}: a crash"
                )
    if problems and not report.failed:
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
    elif problems:
        report.sections.append(("syft node problems", "\n".join(problems)))
    if report.failed:
        shown = [t for t in used if t.node.log_path.exists()]
        for t in shown[-4:]:  # a module may have started many; the last ones matter
            report.sections.append((f"syft node log {t.node.folder}", _log_tail(t.node)))
    return report


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def syft_tracker(pytestconfig: pytest.Config) -> SyftTracker:
    """The plugin's record of nodes and clients (``syft_tracker.login(node)`` for a tracked client)."""
    return _tracker(pytestconfig)


@pytest.fixture(scope="module")
def _syft_shared_nodes(
    tmp_path_factory: pytest.TempPathFactory, syft_tracker: SyftTracker
) -> Iterator[dict[str, NodeProcess]]:
    nodes: dict[str, NodeProcess] = {}
    yield nodes
    problems = [p for p in (syft_tracker.stop(n) for n in nodes.values()) if p]
    crashes = [
        f"shared node {n.folder} exited with code {n.proc.returncode}"
        for n in nodes.values()
        if crashed(syft_tracker.tracked(n)) and not syft_tracker.tracked(n).reported
    ]
    if problems or crashes:
        pytest.fail("\n".join(problems + crashes), pytrace=False)


def _start(folder: Path, tracker: SyftTracker, module: str) -> NodeProcess:
    node = launcher.start_node(folder, name="hospital")
    tracker.tracked(node).module = module  # lives as long as its fixture: not the test's to stop
    return node


@pytest.fixture
def syft_node(request: pytest.FixtureRequest, syft_tracker: SyftTracker) -> Iterator[NodeProcess]:
    """A running node named ``hospital`` in a temporary folder (shared: see the module's doc)."""
    mark = request.node.get_closest_marker("syft_shared_node")
    if mark is not None and request.node.get_closest_marker("syft_own_node") is None:
        name = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        shared: dict[str, NodeProcess] = request.getfixturevalue("_syft_shared_nodes")
        if name not in shared:
            folder = request.getfixturevalue("tmp_path_factory").mktemp(f"shared-{name}")
            shared[name] = _start(folder / "hospital", syft_tracker, _module(request.node))
            syft_tracker.tracked(shared[name]).memo["shared"] = True
        yield shared[name]
        return
    folder: Path = request.getfixturevalue("tmp_path")
    node = _start(folder / "hospital", syft_tracker, "")
    t = syft_tracker.tracked(node)
    t.module, t.nodeid = "-", request.node.nodeid  # this test's own
    try:
        yield node
    finally:
        problem = syft_tracker.stop(node)
        if problem:
            item_problems = request.node.stash.setdefault(_PROBLEMS, [])
            item_problems.append(problem)


@pytest.fixture
def syft_node_memo(syft_node: NodeProcess, syft_tracker: SyftTracker) -> dict[str, Any]:
    """A dict that lives as long as ``syft_node``: fresh for a fresh node, kept for a shared one."""
    return syft_tracker.tracked(syft_node).memo


@pytest.fixture
def make_user(syft_node: NodeProcess, syft_node_memo: dict[str, Any]) -> Callable[..., Path]:
    """``make_user("alice")`` adds a data scientist (or ``role="owner"``) and returns their key file."""
    users: dict[str, tuple[str, Path]] = syft_node_memo.setdefault("syft_users", {})

    def make(name: str, role: str = "data_scientist") -> Path:
        if syft_node_memo.get("shared") and users.get(name, ("", None))[0] == role:  # added by an earlier test
            return users[name][1]
        key, pub = write_keypair(generate_keypair(name), syft_node.folder.parent / "users")
        with syft_node.login() as owner:
            owner.users.add(name, role=role, public_key=pub)
        users[name] = (role, key)
        return key

    return make
