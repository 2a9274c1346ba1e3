"""Request benchmark: the notification path from ``ptr.request()`` to ``req.wait()`` returning.

A data scientist files ``x.request(reason=…)`` on a fresh private result ``x = ptr + i`` and
calls ``req.wait()`` at once; a data owner, logged in with its own client in another process
(``--owner thread`` for a thread of this process), waits for the node's pushed
``request.new`` event (``client.wait_event``, no polling), fetches the request and approves it.
Measured per request, all on the system-wide monotonic clock (``CLOCK_MONOTONIC``, so stamps
from the two processes compare):

- total: from the scientist's ``ptr.request(…)`` call to its ``req.wait()`` returning;
- request(): the scientist's ``requests.create`` call;
- owner notice: from ``request()`` returning to the owner's ``wait_event`` returning;
- owner fetch: the owner's ``client.requests[id]`` (it needs the content hash to sign);
- decide(): the owner's ``req.approve()`` call (sign, send, node checks and commits, reply);
- wake-up: from the owner's decide reply to the scientist's ``wait()`` returning, split into
  the event push (until the scientist's ``wait_event`` returns) and the final refresh.

These five parts add up to the total. The baseline, measured in the same run and interleaved
with the requests, is one plain op round trip, ``ptr + 1`` on a 10-element float64 asset, by
the same scientist client (and, for reference, ``requests.get`` and ``hello``).

Run ``python bench/bench_requests.py`` (100 requests; ``--quick`` for 20).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from common import filesystem, stop_node  # noqa: E402
from common import print_machine as print_machine_common  # noqa: E402

import syft_kernel as sk

SMALL_ELEMENTS = 10
OPS_PER_CYCLE = 10  # baseline ``ptr + 1`` round trips timed before each request
GETS_PER_CYCLE = 5  # reference ``requests.get`` and ``hello`` round trips per request
WAIT_TIMEOUT = 60.0  # s: a request not decided by then fails the run


def clock() -> int:
    """Nanoseconds on CLOCK_MONOTONIC: one clock for every process of this machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# ---------------------------------------------------------------- the owner


def owner_approver(conn: Connection, connection_file: str, owner_key: str, total: int, transport: str | None) -> None:
    """Log in as the owner and approve ``total`` requests, each as soon as the node announces
    it; send ``(request id, seen, fetched, decided)`` stamps back for each, then ``done``."""
    try:
        with sk.login(connection_file, key=owner_key, transport=transport) as owner:
            conn.send(("ready", None))
            for _ in range(total):
                event = owner.wait_event(lambda e: e.get("event") == "request.new", WAIT_TIMEOUT)
                seen = clock()
                if event is None:
                    conn.send(("error", f"no request.new event within {WAIT_TIMEOUT:.0f} s"))
                    return
                req = owner.requests[str(event["request"])]
                fetched = clock()
                req.approve(comment="bench")
                decided = clock()
                conn.send(("approved", (req.id, seen, fetched, decided)))
            conn.send(("done", owner.round_trips))
    except Exception as e:  # report it to the scientist side rather than hang it
        conn.send(("error", f"{type(e).__name__}: {e}"))


@dataclass
class Owner:
    """The approver, in a spawned process or a thread, and the pipe its stamps come back on."""

    conn: Connection
    join: Callable[[float], None]
    alive: Callable[[], bool]
    stop: Callable[[], None]
    pid: int

    @classmethod
    def start(cls, mode: str, node: sk.NodeProcess, total: int, transport: str | None) -> Owner:
        args = (str(node.connection_file), str(node.owner_key), total, transport)
        if mode == "process":
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=owner_approver, args=(child, *args), daemon=True)
            proc.start()
            assert proc.pid is not None
            owner = cls(parent, proc.join, proc.is_alive, proc.terminate, proc.pid)
        else:
            parent, child = mp.Pipe()
            thread = threading.Thread(target=owner_approver, args=(child, *args), daemon=True)
            thread.start()
            owner = cls(parent, thread.join, thread.is_alive, lambda: None, os.getpid())
        kind, detail = owner.recv(120)
        if kind != "ready":
            raise RuntimeError(f"the owner did not start: {detail}")
        return owner

    def recv(self, timeout: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the owner sent nothing within {timeout:.0f} s")
        kind, detail = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"the owner failed: {detail}")
        return kind, detail


# ---------------------------------------------------------------- the scientist


@dataclass
class Cycle:
    """One request's stamps (ns, CLOCK_MONOTONIC) from both sides."""

    t0: int  # scientist calls ptr.request()
    t1: int  # request() returned
    seen: int  # owner's wait_event returned with request.new
    fetched: int  # owner's requests[id] returned
    decided: int  # owner's approve() returned
    woken: int | None  # scientist's wait_event returned (None: wait() never had to wait)
    t2: int  # scientist's wait() returned

    def parts(self) -> dict[str, float]:
        """Each part in µs; the five parts after the total sum to it. The wake-up split is
        left out when ``wait()``'s first refresh already found the request decided."""
        us = 1e-3
        out = {
            "total request -> wait": (self.t2 - self.t0) * us,
            "request() call": (self.t1 - self.t0) * us,
            "owner notice": (self.seen - self.t1) * us,
            "owner fetch": (self.fetched - self.seen) * us,
            "decide() call": (self.decided - self.fetched) * us,
            "wake-up": (self.t2 - self.decided) * us,
        }
        if self.woken is not None:
            out["  event push"] = (self.woken - self.decided) * us
            out["  final refresh"] = (self.t2 - self.woken) * us
        return out


@dataclass
class Results:
    cycles: list[Cycle] = field(default_factory=list)
    baseline: dict[str, list[float]] = field(default_factory=lambda: {"ptr + 1": [], "requests.get": [], "hello": []})


class WakeClock:
    """Wraps the scientist client's ``wait_event`` to note when it returns (the moment the
    decision event reached ``Request.wait``); the call itself is unchanged."""

    def __init__(self, client: sk.Client) -> None:
        self.inner = client.wait_event
        self.last: int | None = None
        client.wait_event = self  # type: ignore[method-assign]

    def __call__(self, match: Callable[[dict[str, Any]], bool], timeout: float | None) -> dict[str, Any] | None:
        event = self.inner(match, timeout)
        self.last = clock()
        return event


def time_us(fn: Callable[[], Any], n: int, out: list[float], keep: list[Any]) -> None:
    """Time ``n`` calls of ``fn`` in µs; results are kept alive (freed outside timed code)."""
    for _ in range(n):
        t0 = clock()
        r = fn()
        out.append((clock() - t0) / 1e3)
        keep.append(r)


def run_cycles(sci: sk.Client, owner: Owner, n: int, warmup: int) -> Results:
    """``warmup`` untimed then ``n`` timed request cycles, each preceded by baseline calls."""
    ptr: Any = sci.datasets["bench"]["small"]  # Any: its operators are set dynamically
    wake = WakeClock(sci)
    res = Results()
    targets: list[Any] = []  # requested objects stay alive to the end: no "del" mid-cycle
    last: sk.Request | None = None
    for i in range(warmup + n):
        timed = i >= warmup
        kept: list[Any] = []
        sink = res.baseline if timed else {k: [] for k in res.baseline}
        time_us(lambda: ptr + 1, OPS_PER_CYCLE, sink["ptr + 1"], kept)
        if last is not None:
            time_us(last.refresh, GETS_PER_CYCLE, sink["requests.get"], kept)
        time_us(lambda: sci.call("hello"), GETS_PER_CYCLE, sink["hello"], kept)
        kept.clear()
        x = ptr + float(i)  # a fresh private object: one request per object
        targets.append(x)
        sci.stats()  # a synchronous call: the node has handled the "del" messages before t0
        gc.collect()
        wake.last = None
        t0 = clock()
        req = x.request(reason=f"bench request {i}")
        t1 = clock()
        req.wait(timeout=WAIT_TIMEOUT)
        t2 = clock()
        _, (req_id, seen, fetched, decided) = owner.recv(WAIT_TIMEOUT)
        if req_id != req.id or req.status != "approved":
            raise RuntimeError(
                f"expected {req.id} approved, the owner approved {req_id} and the request is {req.status}"
            )
        if timed:
            res.cycles.append(Cycle(t0, t1, seen, fetched, decided, wake.last, t2))
        last = req
    if not np.isclose(targets[-1].get(), np.arange(SMALL_ELEMENTS) + warmup + n - 1).all():
        raise AssertionError("the approved value is not ptr + i")
    return res


# ---------------------------------------------------------------- reporting


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def print_machine(tmp: Path) -> None:
    """The machine, library versions and the node folder's file system (commits fsync there)."""
    print_machine_common(
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, CURVE {zmq.has('curve')}; "
        f"numpy {np.__version__}; syft-kernel {sk.__version__}"
    )
    fs = filesystem(tmp)
    print(f"node folder: {tmp} ({fs}; SQLite WAL, synchronous=FULL: every commit is an fsync)")


def print_results(res: Results, owner_mode: str, transport: str) -> dict[str, float]:
    """The table; returns the ratios printed under it."""
    n = len(res.cycles)
    parts: dict[str, list[float]] = {}
    for c in res.cycles:
        for k, v in c.parts().items():
            parts.setdefault(k, []).append(v)
    base = res.baseline["ptr + 1"]
    b50, b99 = pct(base, 50), pct(base, 99)
    print(
        f"\nrequest -> approve -> wait, µs ({n} requests after warm-up; owner in a "
        f"{owner_mode}, approving on its pushed request.new event; {transport})"
    )
    print(f"{'path':<26} {'n':>5} {'p50':>9} {'p99':>9} {'mean':>9}  {'p50/op':>7} {'p99/op':>7}")

    def row(name: str, v: list[float]) -> None:
        print(
            f"{name:<26} {len(v):>5} {pct(v, 50):9.1f} {pct(v, 99):9.1f} "
            f"{float(np.mean(v)):9.1f}  {pct(v, 50) / b50:6.2f}x {pct(v, 99) / b99:6.2f}x"
        )

    for name in (
        "total request -> wait",
        "request() call",
        "owner notice",
        "owner fetch",
        "decide() call",
        "wake-up",
        "  event push",
        "  final refresh",
    ):
        if name in parts:
            row(name, parts[name])
    print("baseline, same client, interleaved:")
    for name, v in res.baseline.items():
        row(f"  {name}", v)
    total = parts["total request -> wait"]
    ratios = {"p50": pct(total, 50) / b50, "p99": pct(total, 99) / b99, "wake": pct(parts["wake-up"], 50) / b50}
    print("\nratios")
    print(f"request -> wait p50 / ptr + 1 p50: {pct(total, 50):.0f} / {b50:.0f} µs = {ratios['p50']:.1f}x")
    print(f"request -> wait p99 / ptr + 1 p99: {pct(total, 99):.0f} / {b99:.0f} µs = {ratios['p99']:.1f}x")
    print(
        f"wake-up p50 / ptr + 1 p50: {ratios['wake']:.2f}x (the event push plus one "
        "requests.get round trip, Request.wait's refresh)"
    )
    mean_sum = sum(
        float(np.mean(parts[k])) for k in ("request() call", "owner notice", "owner fetch", "decide() call", "wake-up")
    )
    print(f"check: the five parts' means sum to {mean_sum:.1f} µs, the total's mean is {float(np.mean(total)):.1f} µs")
    unsplit = n - len(parts.get("  event push", []))
    print(
        "notes: owner notice and event push compare the two clients' stamps; the node sends "
        "each event right after the reply before it, so either can come out slightly negative"
    )
    if unsplit:
        print(
            f"       in {unsplit} of {n} requests wait()'s first refresh already found the "
            "request approved (no event wait): they have no event push / final refresh split"
        )
    return ratios


# ---------------------------------------------------------------- setup and main


def main(argv: list[str] | None = None) -> int:
    """Start a node, a scientist and an approving owner; run the request cycles; print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 requests: a smoke run")
    parser.add_argument("--requests", type=int, default=None, help="timed requests (default 100, quick 20)")
    parser.add_argument(
        "--owner",
        choices=("process", "thread"),
        default="process",
        help="where the approving owner runs (default: its own process)",
    )
    parser.add_argument(
        "--transport",
        choices=("ipc", "tcp"),
        default="ipc",
        help="how the scientist and the owner connect (default ipc)",
    )
    args = parser.parse_args(argv)
    n = args.requests or (20 if args.quick else 100)
    warmup = 3 if args.quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-req-"))
    print_machine(tmp)
    started = time.perf_counter()
    node = None
    owner: Owner | None = None
    sci = None
    try:
        node = sk.start_node(tmp / "node", name="bench")
        with node.login() as admin:
            admin.datasets.upload(
                "bench",
                assets={"small": np.arange(SMALL_ELEMENTS, dtype=np.float64)},
                mock={"small": np.zeros(SMALL_ELEMENTS)},
                description="request benchmark data",
            )
            key, pub = sk.write_keypair(sk.generate_keypair("alice"), tmp / "users")
            admin.users.add("alice", role="data_scientist", public_key=pub)
        transport = "tcp" if args.transport == "tcp" else None
        owner = Owner.start(args.owner, node, warmup + n, transport)
        sci = sk.login(node.connection_file, key=key, transport=transport)
        print(
            f"setup {time.perf_counter() - started:.1f} s (node pid {node.proc.pid}, owner pid "
            f"{owner.pid}, scientist pid {os.getpid()}; scientist via {sci.address.split(':')[0]})"
            "; node log level INFO"
        )
        res = run_cycles(sci, owner, n, warmup)
        kind, owner_round_trips = owner.recv(30)
        assert kind == "done"
        owner.join(10)
        print(f"round trips: scientist {sci.round_trips}, owner {owner_round_trips} (for {warmup + n} requests)")
    finally:
        if sci is not None:
            sci.close()
        if owner is not None and owner.alive():
            owner.stop()
            owner.join(10)
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)
    print_results(res, args.owner, args.transport)
    print(f"total {time.perf_counter() - started:.1f} s{' (quick)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
