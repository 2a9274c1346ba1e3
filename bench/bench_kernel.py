"""Kernel benchmark: a cell of dependent pointer ops through the ``syft`` kernel, in one run with
the same ops run eagerly and in one batch in this process.

The cell (``--ops``, default 100 ops, each depending on the one before)::

    x = births['weight'] * 1.0     # 2 ops: getitem, mul
    x = x + 1                      # 1 op, repeated ops - 3 times (97 times for 100 ops)
    x.mean()                       # 1 op; the cell's value, displayed as usual

runs three ways, interleaved in short chunks so load drifts hit all of them alike:

(1) kernel: a real ``syft`` kernel started with ``jupyter_client.KernelManager``, logged in with
    ``%syft connect …``; the time is the wall time of ``execute_interactive`` (request sent →
    execute reply and idle status received), as a notebook front end sees it. Two baselines in
    the same kernel: an empty cell (``pass``), what any cell costs in the kernel protocol, and
    the same number of lines on a float (``x = 1.0``, ``x = x + 1`` …, ``x``), what IPython
    itself spends on a cell that size (transforming, compiling and running each statement,
    history, display); the pointer cell minus the latter is syft's own cost in the kernel.
(2) eager: the same ops in this process with a plain ``sk.login`` client, no batching: one round
    trip per op.
(3) batch: the same ops in this process inside ``with client.batch():``: one plan.

For every cell the node's counters (the owner's ``stats()["counters"]``, read outside the timed
region) give the data scientist's ``run`` requests, other requests and one-way ``del``
messages. Targets: one round trip to the node per cell in the kernel, and the kernel cell at
least 5x faster than eager (p50). After timing, the three ways are checked to give the same
value (read by the owner) and the kernel's ``%syft plan`` to hold all the ops; the kernel's
memory before and after the timed cells is printed too.

Run ``python bench/bench_kernel.py`` (``--quick`` for a smoke run of well under a minute;
``--transport tcp`` for TCP instead of ``ipc://``; ``--ops N`` for another cell length).
"""

from __future__ import annotations

import argparse
import gc
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import ipykernel
import jupyter_client
import numpy as np
import pandas as pd
import zmq
from common import print_machine as print_machine_common  # noqa: E402
from common import (
    stop_node,  # noqa: E402
    verdict,
)
from jupyter_client.manager import KernelManager

import syft_kernel as sk
from syft_kernel.core import codec
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.sample_data import birth_records

USER = "alice"
NODE_NAME = "bench"
ROWS = 3000  # births in the asset (the sample data's default month size)
DEFAULT_OPS = 100
CELL_TIMEOUT = 120.0  # s: a cell that takes longer fails the run

TARGET_ROUND_TRIPS = 1  # round trips to the node per kernel cell
TARGET_SPEEDUP = 5.0  # eager p50 / kernel cell p50


# ---------------------------------------------------------------- the cell, three ways


def cell_source(ops: int) -> str:
    """The kernel cell: ``ops`` dependent ops, the last one the cell's displayed value."""
    adds = ops - 3
    return "x = births['weight'] * 1.0\n" + "x = x + 1\n" * adds + "x.mean()"


def plain_source(ops: int) -> str:
    """The same cell's shape on a float: as many lines and statements, no pointers."""
    return "x = 1.0\n" + "x = x + 1\n" * (ops - 3) + "x"


def eager_ops(births: Any, adds: int) -> Any:
    """The cell's ops on a plain client: each one a round trip."""
    x = births["weight"] * 1.0
    for _ in range(adds):
        x = x + 1
    return x.mean()


def batched_ops(client: sk.Client, births: Any, adds: int) -> Any:
    """The cell's ops inside ``client.batch()``: recorded, sent as one plan when the block ends."""
    with client.batch():
        x = births["weight"] * 1.0
        for _ in range(adds):
            x = x + 1
        m = x.mean()
    return m


class Kernel:
    """A real ``syft`` kernel driven over its ZMQ channels, as a notebook front end does."""

    def __init__(self, log_path: Path, kernel_name: str = "syft") -> None:
        self.log_path = log_path
        self.km = KernelManager(kernel_name=kernel_name)
        with open(log_path, "ab") as log:  # the kernel's own stderr (warnings, crashes)
            self.km.start_kernel(stdout=log, stderr=log)
        self.kc = self.km.client()
        try:
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=60)
            info = self.kc.kernel_info(reply=True, timeout=30)["content"]
        except BaseException:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
            raise
        self.implementation = f"{info['implementation']} {info['implementation_version']}"
        self.text = ""
        self.error: dict[str, Any] | None = None

    def _hook(self, msg: dict[str, Any]) -> None:
        t, c = msg["msg_type"], msg["content"]
        if t == "stream":
            self.text += c["text"]
        elif t in ("execute_result", "display_data"):
            self.text += c["data"].get("text/plain", "") + "\n"
        elif t == "error":
            self.error = c

    def run(self, code: str) -> str:
        """Run a cell; its text output. A cell that fails raises, naming the kernel's error."""
        self.text, self.error = "", None
        reply = self.kc.execute_interactive(code, output_hook=self._hook, timeout=CELL_TIMEOUT)
        if reply["content"]["status"] != "ok" or self.error is not None:
            err = self.error or reply["content"]
            raise RuntimeError(
                f"the kernel cell failed: {err.get('ename')}: {err.get('evalue')}\n"
                f"{code[:200]}\nkernel log tail:\n{self.log()[-2000:]}"
            )
        return self.text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel()


# ---------------------------------------------------------------- measuring


@dataclass
class Way:
    """One way of running the cell: its wall times (ms) and the node's counters per cell."""

    name: str
    ops: int
    fn: Callable[[], Any]
    ms: list[float] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)  # the scientist's "run" requests per cell
    other: list[int] = field(default_factory=list)  # other requests (round trips) per cell
    dels: list[int] = field(default_factory=list)  # one-way "del" messages per cell

    def pct(self, q: float) -> float:
        return float(np.percentile(self.ms, q))

    @property
    def round_trips(self) -> list[int]:
        return [r + o for r, o in zip(self.runs, self.other)]


@dataclass
class Config:
    """How much to run."""

    reps: int
    warmup: int
    chunk: int
    ops: int
    quick: bool


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process in MiB (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def user_counters(owner: sk.Client) -> Counter[str]:
    """The scientist's message counters on the node, by message type."""
    prefix = f"{USER}:"
    counters = owner.stats()["counters"]
    return Counter({k[len(prefix) :]: int(v) for k, v in counters.items() if k.startswith(prefix)})


def timed(path: Way, owner: sk.Client, record: bool) -> None:
    """Run the cell once; keep its wall time and the node's counters for it if ``record``."""
    before = user_counters(owner)
    t0 = time.perf_counter_ns()
    r = path.fn()
    dt = (time.perf_counter_ns() - t0) / 1e6
    del r  # freed after the clock stops: its "del" goes to the node with the next request
    d = user_counters(owner) - before
    if record:
        path.ms.append(dt)
        path.runs.append(d["run"])
        path.dels.append(d["del"])
        path.other.append(sum(v for k, v in d.items() if k not in ("run", "del")))


def measure(ways: list[Way], owner: sk.Client, cfg: Config) -> None:
    """Warm up every way, then run them in turn, ``cfg.chunk`` cells at a time (this process's
    garbage collected before each chunk; the kernel's collector is left alone: its pauses are
    part of what a user waits for)."""
    for p in ways:
        for _ in range(cfg.warmup):
            timed(p, owner, record=False)
    done = 0
    while done < cfg.reps:
        n = min(cfg.chunk, cfg.reps - done)
        for p in ways:
            gc.collect()
            for _ in range(n):
                timed(p, owner, record=True)
        done += n


# ---------------------------------------------------------------- reporting


def _spread(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def print_machine() -> None:
    """The machine and library versions, so runs can be compared."""
    print_machine_common(
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}; numpy {np.__version__}, "
        f"pandas {pd.__version__}; jupyter_client {jupyter_client.__version__}, "
        f"ipykernel {ipykernel.__version__}; syft-kernel {sk.__version__}"
    )


def print_table(ways: list[Way], cfg: Config) -> None:
    print(
        f"\ncell wall time, ms ({cfg.reps} cells per path after {cfg.warmup} warm-up, "
        f"interleaved in chunks of {cfg.chunk}); node messages per cell from the owner's "
        "stats() counters"
    )
    print(
        f"{'path':<34} {'ops':>4} {'p50':>8} {'p99':>8} {'mean':>8} {'min':>8}  "
        f"{'runs':>5} {'other':>5} {'del':>5}  {'µs/op p50':>9}"
    )
    for p in ways:
        per_op = f"{p.pct(50) * 1e3 / p.ops:9.1f}" if p.ops else f"{'-':>9}"
        print(
            f"{p.name:<34} {p.ops:>4} {p.pct(50):8.2f} {p.pct(99):8.2f} "
            f"{float(np.mean(p.ms)):8.2f} {min(p.ms):8.2f}  {_spread(p.runs):>5} "
            f"{_spread(p.other):>5} {_spread(p.dels):>5}  {per_op}"
        )
    print(
        "runs = the scientist's 'run' requests; other = its other requests (round trips too); "
        "del = one-way frees (no reply); a-b = range over the cells"
    )


def print_ratios(ways: list[Way]) -> None:
    """Where the kernel cell's time goes, and the ratios between the ways (p50; p99 after)."""
    empty, plain, cell, eager, batch = ways
    print("\nwhere the kernel cell's p50 goes (differences of p50s)")
    rows = [
        ("kernel protocol: the empty cell", empty.pct(50)),
        (f"IPython on {cell.ops - 1} lines: float cell - empty cell", plain.pct(50) - empty.pct(50)),
        ("syft in the kernel: pointer cell - float cell", cell.pct(50) - plain.pct(50)),
    ]
    for label, ms in rows:
        print(f"  {label:<52} {ms:8.2f} ms")
    print(f"  {'(the same ops in-process in client.batch())':<52} {batch.pct(50):8.2f} ms")
    print("\nratios: p50 (p99)")
    for label, a, b in (
        ("eager / kernel cell", eager, cell),
        ("eager / in-process batch", eager, batch),
        ("kernel cell / in-process batch", cell, batch),
        ("eager / float cell (ceiling if syft work were free)", eager, plain),
    ):
        print(f"  {label:<52} {a.pct(50) / b.pct(50):7.2f}x ({a.pct(99) / b.pct(99):.2f}x)")


def print_summary(ways: list[Way]) -> None:
    """PASS / MISS per target."""
    empty, plain, cell, eager, batch = ways
    print("\nsummary")
    trips = cell.round_trips
    ok_trips = all(t == TARGET_ROUND_TRIPS for t in trips) and all(r == 1 for r in cell.runs)
    print(
        f"target: {TARGET_ROUND_TRIPS} round trip to the node per kernel cell: "
        f"{_spread(trips)} in each of {len(trips)} cells ('run' {_spread(cell.runs)}, other "
        f"{_spread(cell.other)}) -> {verdict(ok_trips)}"
    )
    speedup = eager.pct(50) / cell.pct(50)
    print(
        f"target: kernel cell >= {TARGET_SPEEDUP:g}x faster than eager (p50): {speedup:.1f}x "
        f"({cell.pct(50):.2f} ms vs {eager.pct(50):.2f} ms) -> "
        f"{verdict(speedup >= TARGET_SPEEDUP)}"
    )
    print(
        f"info: round trips per cell: empty cell {_spread(empty.round_trips)}, float cell "
        f"{_spread(plain.round_trips)}, eager {_spread(eager.round_trips)}, "
        f"batch {_spread(batch.round_trips)}"
    )


# ---------------------------------------------------------------- setup and main


def main(argv: list[str] | None = None) -> int:
    """Start a node and a syft kernel, run the cell three ways, print the table and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cells: a smoke run")
    parser.add_argument(
        "--reps", type=int, default=None, help="timed cells per way of running it (default 300, quick 40)"
    )
    parser.add_argument(
        "--ops", type=int, default=DEFAULT_OPS, help=f"dependent ops in the cell (default {DEFAULT_OPS}, at least 3)"
    )
    parser.add_argument(
        "--transport",
        choices=("ipc", "tcp"),
        default="ipc",
        help="how the scientist reaches the node, in the kernel and here "
        "(default ipc, as login picks on the node's host)",
    )
    args = parser.parse_args(argv)
    if args.ops < 3:
        parser.error("--ops must be at least 3")
    cfg = Config(40, 5, 10, args.ops, True) if args.quick else Config(300, 20, 20, args.ops, False)
    if args.reps:
        cfg.reps = args.reps
    adds = cfg.ops - 3
    print_machine()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-kernel-"))
    node = None
    kernel: Kernel | None = None
    clients: list[sk.Client] = []
    try:
        node = sk.start_node(tmp / "node", name=NODE_NAME)
        owner = node.login()
        clients.append(owner)
        births_df = birth_records(month=2, rows=ROWS)
        owner.datasets.upload(
            "birth-records-feb",
            assets={"births": births_df},
            description="Monthly birth records",
            tags=["#February"],
            subject_column="mother_id",
        )
        key, pub = write_keypair(generate_keypair(USER), tmp / "users")
        owner.users.add(USER, role="data_scientist", public_key=pub)
        expected = float(births_df["weight"].mean()) + adds

        kernel = Kernel(tmp / "kernel.log")
        transport = "tcp" if args.transport == "tcp" else None
        kernel.run(
            f"import syft_kernel as sk\n"
            f"%syft connect {node.connection_file} as {NODE_NAME} --key {key}"
            + (" --transport tcp" if transport else "")
        )
        kernel.run(f"births = {NODE_NAME}.datasets['birth-records-feb']['births']")
        address = kernel.run(f"print({NODE_NAME}.address)").strip()
        ds = sk.login(node.connection_file, key=key, transport=transport)
        if address.split(":")[0] != ds.address.split(":")[0]:
            raise AssertionError(f"the kernel reaches the node over {address}, this process over {ds.address}")
        clients.append(ds)
        births = ds.datasets["birth-records-feb"]["births"]
        print(
            f"setup {time.perf_counter() - started:.1f} s: node pid {node.proc.pid} (log level "
            f"INFO), kernel pid {getattr(kernel.km.provisioner, 'pid', '?')} "
            f"({kernel.implementation}); {ROWS} births; the scientist over "
            f"{ds.address.split(':')[0]} in the kernel and here"
        )

        source = cell_source(cfg.ops)
        ways = [
            Way("kernel: empty cell (pass)", 0, partial(kernel.run, "pass")),
            Way(f"kernel: {cfg.ops - 1} lines on a float", 0, partial(kernel.run, plain_source(cfg.ops))),
            Way(f"kernel: {cfg.ops}-op cell", cfg.ops, partial(kernel.run, source)),
            Way("in-process eager (1 call per op)", cfg.ops, lambda: eager_ops(births, adds)),
            Way("in-process client.batch()", cfg.ops, lambda: batched_ops(ds, births, adds)),
        ]
        kernel_pid = getattr(kernel.km.provisioner, "pid", None)
        rss_before = rss_mib(kernel_pid)
        measure(ways, owner, cfg)
        rss_after = rss_mib(kernel_pid)

        # the same value every way (the owner may read any object): checked, untimed
        text = kernel.run(source)
        if f"numpy_scalar pointer on {NODE_NAME}" not in text or "private" not in text:
            raise AssertionError(f"unexpected cell output: {text!r}")
        kernel_id = kernel.run("print(_.id)").strip()
        plan = kernel.run(f"%syft plan {NODE_NAME}")
        if f"last plan: {cfg.ops} op(s)" not in plan:
            raise AssertionError(f"the kernel's plan is not {cfg.ops} ops: {plan.splitlines()[0]}")
        m_eager, m_batch = eager_ops(births, adds), batched_ops(ds, births, adds)
        for label, obj_id in (("kernel", kernel_id), ("eager", m_eager.id), ("batch", m_batch.id)):
            got = float(codec.decode_value(*_get(owner, obj_id)))
            if not math.isclose(got, expected, rel_tol=1e-9):
                raise AssertionError(f"{label} gave {got}, expected {expected}")
        del m_eager, m_batch
        print(
            f"checked: the three ways give mean(weight) * 1.0 + {adds} = {expected:.6f}; "
            f"the kernel's last plan has {cfg.ops} ops"
        )
    finally:
        if kernel is not None:
            kernel.close()
        for c in clients:
            c.close()
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)

    print_table(ways, cfg)
    print_ratios(ways)
    print_summary(ways)
    cell = ways[2]
    first, last = cell.ms[: cfg.chunk], cell.ms[-cfg.chunk :]
    print(
        f"info: kernel cell p50 over its first {len(first)} timed cells {np.median(first):.2f} ms, "
        f"over its last {len(last)} {np.median(last):.2f} ms; slowest {max(cell.ms):.0f} ms"
    )
    if rss_before is not None and rss_after is not None:
        cells = cfg.warmup + cfg.reps
        print(
            f"info: kernel memory (RSS) {rss_before:.0f} -> {rss_after:.0f} MiB over the "
            f"{cells} pointer cells ({(rss_after - rss_before) * 1024 / cells:.0f} KiB per cell; "
            "each displayed result stays in Out)"
        )
    print(f"total {time.perf_counter() - started:.1f} s{' (quick)' if cfg.quick else ''}")
    return 0


def _get(owner: sk.Client, obj_id: str) -> tuple[Any, list[Any]]:
    """The owner's raw ``get`` of any object by id: (wire value, buffers)."""
    body, buffers = owner.call("get", {"id": obj_id})
    return body["value"], buffers


if __name__ == "__main__":
    sys.exit(main())
