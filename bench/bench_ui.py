"""UI benchmark: the live request queue widget's push latency, and approving over the REST API.

Both parts run against a real node, ``start_node(tmp/"hospital", name="hospital")``, holding the
sample February births; a data scientist ``alice`` (this process, her own client) files requests
``weight.mean().request(reason=…)``, each on a fresh private result.

1. Push to the live widget. The owner's ``syft_kernel.widgets.RequestQueue(owner)`` (live, headless:
   no Jupyter) hears the node's pushed ``request.new`` on its background watcher connection and
   reloads itself (``requests.list``, then its rows). Per request, on one clock
   (``CLOCK_MONOTONIC``): from the start of the scientist's ``request()`` call until the request's
   id is in ``queue.requests``, and until the queue's rows are rebuilt (its refresh returns). The
   queue is the library's class, only stamped (a subclass notes when ``requests`` is assigned and
   when ``show_page`` returns; a listener subscribed before it notes when the event arrives).
   Baselines in the same run, interleaved: the ``request()`` call itself and one
   ``owner.call("requests.list", {})``. The polling comparison is computed, not slept: the
   dashboard page (``extension/static/dashboard.js``) reloads every 2 s, so a new request waits
   for the next poll, 1 s on average.
2. Approve over the REST API. A real ``jupyter server`` subprocess with the extension (enabled by
   the installed config; checked with ``GET /syft/api/nodes``), ``SYFT_KERNEL_NODES`` pointing at
   the node's parent folder. Interleaved, each on a fresh pending request:
   ``POST /syft/api/nodes/hospital/requests/<id>/approve`` with a token (one keep-alive
   connection) against ``owner.requests[id].approve("ok")`` in this process (its fetch and its
   ``approve()`` stamped apart). Reference rows: ``GET …/requests/<id>`` over REST and the
   in-process ``requests.get``, so the HTTP + thread hop shows on its own.

Run ``python bench/bench_ui.py`` (30 samples per row; ``--quick`` for 10). Exits 0 after printing.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets
import jupyter_server
import numpy as np
import tornado
import zmq
from common import filesystem, stop_node, verdict  # noqa: E402
from common import print_machine as print_machine_common  # noqa: E402

import syft_kernel as sk
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.sample_data import birth_records
from syft_kernel.widgets import NodeWatcher, RequestQueue
from syft_kernel.widgets.common import highlight

DATASET = "birth-records-feb"
POLL_PERIOD = 2.0  # s: the dashboard page's setInterval (extension/static/dashboard.js)
PUSH_TARGET = 1.5  # after request() returns: at most this multiple of one requests.list (p50)
REST_TARGET = 3.0  # REST approve p50 at most this multiple of the in-process approve p50
WAIT = 30.0  # s: a request not shown / an HTTP reply not back by then fails the run
API = "/syft/api/nodes/hospital/requests"
SERVER_START = 90.0  # s: the jupyter server must answer GET /syft/api/nodes by then


def clock() -> int:
    """Nanoseconds on CLOCK_MONOTONIC (the same clock in every thread)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ms(ns: int) -> float:
    return ns / 1e6


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


# ---------------------------------------------------------------- part 1: the live queue


class StampedQueue(RequestQueue):
    """``RequestQueue`` unchanged, plus stamps: when each request id first appears in
    ``self.requests`` and when the refresh that put it there returned (rows rebuilt)."""

    def __init__(self, client: sk.Client) -> None:
        self.stamp_lock = threading.Condition()
        self.listed: dict[str, int] = {}  # id -> ns when ``requests`` first held it
        self.shown: dict[str, int] = {}  # id -> ns when that refresh returned
        self.refreshes = 0
        super().__init__(client)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "requests" and hasattr(self, "stamp_lock"):
            now = clock()
            with self.stamp_lock:
                for r in value:
                    self.listed.setdefault(r.id, now)

    def show_page(self, page: int) -> None:
        super().show_page(page)
        now = clock()
        with self.stamp_lock:
            self.refreshes += 1
            for r in self.requests:
                self.shown.setdefault(r.id, now)
            self.stamp_lock.notify_all()

    def wait_shown(self, request_id: str, timeout: float) -> int | None:
        with self.stamp_lock:
            self.stamp_lock.wait_for(lambda: request_id in self.shown, timeout)
            return self.shown.get(request_id)


class Arrivals:
    """A watcher listener subscribed before the queue's: notes when each ``request.new`` event
    reaches the watcher thread (the queue's own listener runs right after it)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") == "request.new":
            self.at.setdefault(str(event.get("request")), clock())


def time_ms(fn: Callable[[], Any], out: list[float]) -> Any:
    t0 = clock()
    r = fn()
    out.append(ms(clock() - t0))
    return r


def run_push(
    owner: sk.Client, weight: Any, n: int, warmup: int, keep: list[Any]
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Any]]:
    """Untimed requests until the queue's page is full (at least ``warmup``), then ``n`` timed
    ones, so every timed refresh rebuilds a full page; returns the per-request parts, the
    baselines and a few facts (rows, queue length, one row's syntax highlighting)."""
    arrivals = Arrivals()
    watcher = NodeWatcher.of(owner)
    unsubscribe = watcher.subscribe(arrivals)  # first listener: runs before the queue's
    queue = StampedQueue(owner)
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "total: id in queue.requests",
            "total: rows rebuilt",
            "request() call",
            "event push",
            "refresh: requests.list",
            "rows rebuilt",
        )
    }
    base: dict[str, list[float]] = {"requests.list": []}
    facts: dict[str, Any] = {}
    warmup = max(warmup, queue.page_size)
    try:
        seen = 0
        attempts = 0
        i = 0
        while seen < warmup + n:
            timed = seen >= warmup
            x = weight.mean()  # a fresh private object: one request per object
            keep.append(x)
            if timed:
                time_ms(lambda: owner.call("requests.list", {}), base["requests.list"])
            gc.collect()
            t0 = clock()
            req = x.request(reason=f"ui bench {i}")
            t1 = clock()
            i += 1
            shown = queue.wait_shown(req.id, 5.0 if not timed else WAIT)
            if shown is None:
                attempts += 1  # the watcher may not be connected yet for the first request
                if timed or attempts > 5:
                    raise RuntimeError(f"request {req.id} did not appear in the live queue")
                continue
            seen += 1
            if not timed:
                continue
            with queue.stamp_lock:
                listed = queue.listed[req.id]
            arrived = arrivals.at.get(req.id)
            if arrived is None or not t0 < arrived <= listed <= shown:
                raise RuntimeError(
                    f"request {req.id}: the queue showed it without its event (refreshed for another reason)"
                )
            parts["total: id in queue.requests"].append(ms(listed - t0))
            parts["total: rows rebuilt"].append(ms(shown - t0))
            parts["request() call"].append(ms(t1 - t0))
            parts["event push"].append(ms(arrived - t1))
            parts["refresh: requests.list"].append(ms(listed - arrived))
            parts["rows rebuilt"].append(ms(shown - listed))
        facts["queue length"] = len(queue.requests)
        facts["rows"] = len(queue.list.children)
        facts["missed"] = attempts
        # Where the rows' time goes: each refresh walks every row on the page; a row redraws only
        # if its request changed, and highlighting is cached per source (measured cold and warm).
        code = "\n".join(req.plan)
        highlight.cache_clear()
        cold_ms: list[float] = []
        time_ms(lambda: highlight(code), cold_ms)
        facts["highlight cold"] = cold_ms
        highlight_ms: list[float] = []
        for _ in range(20):
            time_ms(lambda: highlight(code), highlight_ms)
        facts["highlight"] = highlight_ms
        facts["plan lines"] = len(req.plan)
    finally:
        queue.close()
        unsubscribe()
        watcher.stop()
    return parts, base, facts


def print_push(parts: dict[str, list[float]], base: dict[str, list[float]], facts: dict[str, Any]) -> dict[str, float]:
    n = len(parts["request() call"])
    print(
        f"\n1. push to the live RequestQueue widget, ms ({n} requests after warm-up; the page "
        f"held {facts['rows']} rows throughout; the queue ended with {facts['queue length']} "
        "requests)"
    )
    print(f"{'path':<32} {'n':>4} {'p50':>8} {'p90':>8} {'mean':>8}")

    def row(name: str, v: list[float]) -> None:
        print(f"{name:<32} {len(v):>4} {pct(v, 50):8.2f} {pct(v, 90):8.2f} {float(np.mean(v)):8.2f}")

    for name in ("total: id in queue.requests", "total: rows rebuilt"):
        row(name, parts[name])
    print("  parts (sum to 'rows rebuilt'):")
    for name in ("request() call", "event push", "refresh: requests.list", "rows rebuilt"):
        row(f"  {name}", parts[name])
    print("baselines, same run, interleaved (the request() call is the row above):")
    for name, v in base.items():
        row(f"  {name}", v)
    row(f"  pygments, one row ({facts['plan lines']} lines)", facts["highlight"])
    push50 = pct(parts["total: id in queue.requests"], 50)
    push90 = pct(parts["total: id in queue.requests"], 90)
    req50, req90 = pct(parts["request() call"], 50), pct(parts["request() call"], 90)
    list50 = pct(base["requests.list"], 50)
    extra50 = pct(parts["total: id in queue.requests"], 50) - req50
    print("\nratios")
    print(
        f"push-to-widget vs. request round trip, p50: {push50:.2f} / {req50:.2f} ms = "
        f"{push50 / req50:.2f}x; p90: {push90:.2f} / {req90:.2f} ms = {push90 / req90:.2f}x"
    )
    print(f"push-to-widget vs. requests.list round trip, p50: {push50:.2f} / {list50:.2f} ms = {push50 / list50:.2f}x")
    print(
        f"after request() returns the widget needs {extra50:.2f} ms (p50 difference): the event "
        f"push plus the queue's requests.list ({list50:.2f} ms on its own)"
    )
    # A poller reloading every POLL_PERIOD sees a new request at the next poll: the wait is
    # uniform on [0, POLL_PERIOD), mean POLL_PERIOD / 2, plus its own requests.list.
    poll_mean = req50 + POLL_PERIOD / 2 * 1e3 + list50
    poll_worst = req50 + POLL_PERIOD * 1e3 + list50
    push_mean = float(np.mean(parts["total: id in queue.requests"]))
    print(
        f"polling UI ({POLL_PERIOD:g} s period, as the dashboard page): expected staleness "
        f"{POLL_PERIOD / 2:g} s mean, {POLL_PERIOD:g} s worst -> request to visible "
        f"~{poll_mean:.0f} ms mean, ~{poll_worst:.0f} ms worst (request() p50 + wait + "
        "requests.list p50; computed, not slept)"
    )
    print(
        f"push vs. polling: mean {push_mean:.2f} ms vs ~{poll_mean:.0f} ms = "
        f"{poll_mean / push_mean:.0f}x sooner; p90 {push90:.2f} ms vs worst ~{poll_worst:.0f} ms"
    )
    hl = pct(facts["highlight"], 50) * facts["rows"]
    print(
        f"rows rebuilt p50 {pct(parts['rows rebuilt'], 50):.2f} ms: every refresh walks all "
        f"{facts['rows']} rows, redrawing only changed ones; highlighting a plan costs "
        f"{facts['highlight cold'][0]:.2f} ms once, then ~{hl:.2f} ms per page from the cache"
    )
    if facts["missed"]:
        print(
            f"note: {facts['missed']} warm-up request(s) reached the queue only with a later "
            "event (the watcher was still connecting)"
        )
    ok = extra50 <= PUSH_TARGET * list50
    print(
        f"{verdict(ok)} after request() returns, the widget has the request within "
        f"{PUSH_TARGET:g}x one requests.list (p50 {extra50:.2f} ms <= "
        f"{PUSH_TARGET * list50:.2f} ms)"
    )
    return {"push/request": push50 / req50, "push/list": push50 / list50}


# ---------------------------------------------------------------- part 2: REST vs in-process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    """``python -m jupyter server`` with the syft extension, on loopback, with a token."""

    def __init__(self, tmp: Path, nodes_dir: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        root = tmp / "root"
        root.mkdir(exist_ok=True)
        self.log_path = tmp / "jupyter.log"
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--no-browser",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        env = {**os.environ, "SYFT_KERNEL_NODES": str(nodes_dir), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        self.conn: http.client.HTTPConnection | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}", "Content-Type": "application/json"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def fetch(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request on the keep-alive connection (reconnects if the server closed it)."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = self.connect()
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, ConnectionError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self) -> dict[str, Any]:
        """Poll ``GET /syft/api/nodes`` until the server and the extension answer."""
        deadline = time.monotonic() + SERVER_START
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter server exited with {self.proc.returncode}; log tail:\n{self.log()[-3000:]}"
                )
            try:
                status, body = self.fetch("GET", "/syft/api/nodes")
                if status == 200:
                    return body  # type: ignore[no-any-return]
                raise RuntimeError(f"GET /syft/api/nodes: HTTP {status} {body}: is the syft_kernel.extension enabled?")
            except (OSError, http.client.HTTPException):
                self.conn = None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter server not answering after {SERVER_START:.0f} s; log tail:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def rest_approve(server: JupyterServer, request_id: str, sink: dict[str, list[float]]) -> None:
    """``POST …/requests/<id>/approve`` on the keep-alive connection, timed."""
    t0 = clock()
    status, info = server.fetch("POST", f"{API}/{request_id}/approve", {"comment": "ok"})
    sink["REST POST approve"].append(ms(clock() - t0))
    if status != 200 or info.get("status") != "approved":
        raise RuntimeError(f"REST approve of {request_id}: HTTP {status} {info}")


def local_approve(owner: sk.Client, request_id: str, sink: dict[str, list[float]]) -> None:
    """``owner.requests[id].approve("ok")`` in this process, its fetch and approve stamped apart."""
    t0 = clock()
    req = owner.requests[request_id]
    t1 = clock()
    req.approve("ok")
    t2 = clock()
    sink["in-process requests[id].approve"].append(ms(t2 - t0))
    sink["  requests[id] (fetch)"].append(ms(t1 - t0))
    sink["  .approve()"].append(ms(t2 - t1))
    if req.status != "approved":
        raise RuntimeError(f"in-process approve of {request_id}: {req.status}")


def run_rest(
    server: JupyterServer, owner: sk.Client, weight: Any, n: int, warmup: int, keep: list[Any]
) -> dict[str, list[float]]:
    """Per cycle two fresh pending requests: one approved over REST, one in-process (order
    alternating), plus reference GETs of a decided request both ways."""
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "REST POST approve",
            "in-process requests[id].approve",
            "  requests[id] (fetch)",
            "  .approve()",
            "REST GET request",
            "in-process requests.get",
        )
    }
    for i in range(warmup + n):
        timed = i >= warmup
        sink = rows if timed else {k: [] for k in rows}
        reqs = []
        for j in range(2):
            x = weight.mean()
            keep.append(x)
            reqs.append(x.request(reason=f"rest bench {i}.{j}").id)
        rest_id, local_id = reqs if i % 2 == 0 else reqs[::-1]
        gc.collect()
        if i % 2 == 0:
            rest_approve(server, rest_id, sink)
            local_approve(owner, local_id, sink)
        else:
            local_approve(owner, local_id, sink)
            rest_approve(server, rest_id, sink)
        t0 = clock()
        status, info = server.fetch("GET", f"{API}/{rest_id}")
        sink["REST GET request"].append(ms(clock() - t0))
        if status != 200 or info.get("id") != rest_id:
            raise RuntimeError(f"REST GET of {rest_id}: HTTP {status} {info}")
        t0 = clock()
        owner.call("requests.get", {"id": local_id})
        sink["in-process requests.get"].append(ms(clock() - t0))
    return rows


def print_rest(rows: dict[str, list[float]]) -> dict[str, float]:
    n = len(rows["REST POST approve"])
    print(
        f"\n2. approve over the REST API vs in-process, ms ({n} each after warm-up, interleaved, "
        "each on a fresh pending request)"
    )
    print(f"{'path':<36} {'n':>4} {'p50':>8} {'p90':>8} {'mean':>8}")
    for name, v in rows.items():
        print(f"{name:<36} {len(v):>4} {pct(v, 50):8.2f} {pct(v, 90):8.2f} {float(np.mean(v)):8.2f}")
    rest50, rest90 = pct(rows["REST POST approve"], 50), pct(rows["REST POST approve"], 90)
    loc50 = pct(rows["in-process requests[id].approve"], 50)
    loc90 = pct(rows["in-process requests[id].approve"], 90)
    dec50 = pct(rows["  .approve()"], 50)
    hop50 = pct(rows["REST GET request"], 50) - pct(rows["in-process requests.get"], 50)
    ratio = rest50 / loc50
    print("\nratios")
    print(
        f"REST / in-process owner.requests[id].approve(), p50: {rest50:.2f} / {loc50:.2f} ms = "
        f"{ratio:.2f}x; p90: {rest90:.2f} / {loc90:.2f} ms = {rest90 / loc90:.2f}x"
    )
    print(
        f"REST / in-process .approve() alone (request already fetched), p50: {rest50:.2f} / "
        f"{dec50:.2f} ms = {rest50 / dec50:.2f}x"
    )
    print(
        f"the HTTP + thread hop (REST GET - in-process requests.get, p50): {hop50:.2f} ms; "
        f"REST approve - in-process fetch+approve, p50: {rest50 - loc50:.2f} ms"
    )
    print(
        f"{verdict(ratio <= REST_TARGET)} REST approve p50 <= {REST_TARGET:g}x the in-process "
        f"owner.requests[id].approve('ok') p50 ({ratio:.2f}x)"
    )
    return {"rest/local": ratio}


# ---------------------------------------------------------------- setup and main


def print_machine(tmp: Path) -> None:
    print_machine_common(
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}; ipywidgets {ipywidgets.__version__}"
        f"; jupyter_server {jupyter_server.__version__}, tornado {tornado.version}; "
        f"syft-kernel {sk.__version__}"
    )
    fs = filesystem(tmp)
    print(f"node folder: {tmp} ({fs}; every request and decision is an fsync'd SQLite commit)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 samples per row: a smoke run")
    parser.add_argument(
        "--samples", type=int, default=None, help="timed requests / approvals per path (default 30, quick 10)"
    )
    args = parser.parse_args(argv)
    n = args.samples or (10 if args.quick else 30)
    warmup = 3
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-ui-"))
    print_machine(tmp)
    started = time.perf_counter()
    node: NodeProcess | None = None
    server: JupyterServer | None = None
    owner = sci = None
    keep: list[Any] = []  # requested objects stay alive to the end: no "del" mid-run
    try:
        node = start_node(tmp / "hospital", name="hospital")
        owner = node.login()
        owner.datasets.upload(
            DATASET,
            assets={"births": birth_records(month=2, rows=500)},
            description="Monthly birth records",
            subject_column="mother_id",
        )
        key, pub = sk.write_keypair(sk.generate_keypair("alice"), tmp / "users")
        owner.users.add("alice", role="data_scientist", public_key=pub)
        sci = sk.login(node.connection_file, key=key)
        weight = sci.datasets[DATASET]["births"]["weight"]
        print(
            f"setup {time.perf_counter() - started:.1f} s (node pid {node.proc.pid}; owner "
            f"via {owner.address.split(':')[0]}, scientist via {sci.address.split(':')[0]})"
        )

        parts, base, facts = run_push(owner, weight, n, warmup, keep)

        server = JupyterServer(tmp, tmp)
        nodes = server.wait_ready()
        listed = [(d["name"], d["status"]) for d in nodes["nodes"]]
        if ("hospital", "running") not in listed:
            raise RuntimeError(f"GET /syft/api/nodes does not list hospital running: {listed}")
        print(
            f"jupyter server pid {server.proc.pid} on 127.0.0.1:{server.port} answered "
            f"GET /syft/api/nodes after {time.perf_counter() - server.started:.1f} s: {listed}"
        )
        rows = run_rest(server, owner, weight, n, warmup, keep)
    finally:
        keep.clear()
        for client in (sci, owner):
            if client is not None:
                client.close()
        if server is not None:
            code = server.stop()
            if code not in (0, -signal.SIGTERM):
                print(f"warning: jupyter server exited with {code}; log tail:\n{server.log()[-2000:]}")
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)
    print_push(parts, base, facts)
    print_rest(rows)
    print(f"\ntotal {time.perf_counter() - started:.1f} s{' (quick)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
