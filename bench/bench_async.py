"""Many requests in flight: the async client against sequential calls, and one cell over three
nodes against the slowest node alone.

    python bench/bench_async.py [--quick]

(a) 1,000 independent ops issued at once through ``AsyncClient`` (``asyncio.gather``, one DEALER)
    against the same 1,000 as sequential calls of the sync ``Client``. Target: >= 5x faster.
(b) A cell that works on three nodes (``flush_all`` sends every node's plan before waiting on
    any) against the same cell's work on the slowest node alone. Target: <= 1.3x.
Both sides run in the same process against the same nodes, alternating, median of repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_machine, stop_node, verdict

from syft_kernel.aio import connect
from syft_kernel.batch import current, flush_all, set_auto
from syft_kernel.core import schema
from syft_kernel.launcher import start_node


def _node(root: Path, name: str, rows: int):  # type: ignore[no-untyped-def]
    node = start_node(root / name, name=name)
    with node.login() as owner:
        owner.datasets.upload("data", assets={"x": np.arange(rows, dtype=np.float64)})
        owner.datasets.upload("tiny", assets={"x": np.arange(100, dtype=np.float64)})  # (a): the protocol, not numpy
    return node


async def _gathered(node, body: schema.Body, n: int) -> float:  # type: ignore[no-untyped-def]
    async with await connect(node.connection_file, node.owner_key) as aio:
        await aio.call(body)
        t = time.perf_counter()
        replies = await asyncio.gather(*(aio.call(body) for _ in range(n)))
        elapsed = time.perf_counter() - t
        ids = [r[0]["results"][0]["id"] for r in replies if isinstance(r[0], dict) and "results" in r[0]]
        if ids:
            await aio.call(schema.Del(ids=ids))
        return elapsed


def _sequential(client, body: schema.Body, n: int) -> float:  # type: ignore[no-untyped-def]
    client.call(body)
    t = time.perf_counter()
    ids = []
    for _ in range(n):
        reply, _ = client.call(body)
        if "results" in reply:
            ids.append(reply["results"][0]["id"])
    elapsed = time.perf_counter() - t
    if ids:
        client.call(schema.Del(ids=ids))
    return elapsed


def _cell(clients: list, work: int) -> float:  # type: ignore[no-untyped-def]
    """One cell: ``work`` chained ops on each client's asset, sent when the cell ends."""
    set_auto(True)
    try:
        t = time.perf_counter()
        keep = []
        for c in clients:
            x = c.datasets["data"]["x"]
            current(c)
            for _ in range(work):
                x = (x * 1.0001 + 1.0).cumsum() / 1e6
            keep.append(x.sum())
        flush_all()
        elapsed = time.perf_counter() - t
    finally:
        set_auto(False)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    print_machine("pyzmq asyncio")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nodes = [_node(root, "small-a", 200_000), _node(root, "small-b", 200_000), _node(root, "big", 2_000_000)]
        try:
            owner = nodes[0].login()
            ptr = {"~": "ref", "id": "asset:tiny/x"}
            cases = [
                ("hello", schema.Hello()),
                ("ptr + 1 (run)", schema.Run(ops=[{"kind": "op", "name": "add", "args": [ptr, 1], "kwargs": []}])),
            ]
            print("\n(a) 1,000 independent ops: sequential sync calls vs one AsyncClient with all in flight")
            print(f"{'op':<16}{'sequential s':>14}{'async s':>10}{'speedup':>10}  target >= 5x")
            for name, body in cases:
                seq, con = [], []
                for _ in range(repeats):
                    seq.append(_sequential(owner, body, 1000))
                    con.append(asyncio.run(_gathered(nodes[0], body, 1000)))
                s, c = statistics.median(seq), statistics.median(con)
                print(f"{name:<16}{s:>14.3f}{c:>10.3f}{s / c:>9.2f}x  {verdict(s / c >= 5)}")
                ok &= s / c >= 5
            owner.close()

            clients = [n.login() for n in nodes]
            print("\n(b) one cell over three nodes (each plan sent before waiting on any) vs the slowest node alone")
            alone, three, serial = [], [], []
            for _ in range(repeats):
                alone.append(_cell(clients[2:], 20))
                three.append(_cell(clients, 20))
                serial.append(sum(_cell([c], 20) for c in clients))
            a, t3, sq = statistics.median(alone), statistics.median(three), statistics.median(serial)
            print(
                f"slowest node alone {a * 1e3:8.1f} ms   three nodes {t3 * 1e3:8.1f} ms   ratio {t3 / a:.2f}x"
                f"  target <= 1.3x  {verdict(t3 / a <= 1.3)}"
            )
            print(f"(the three one after the other: {sq * 1e3:.1f} ms, {sq / a:.2f}x)")
            ok &= t3 / a <= 1.3
            for c in clients:
                c.close()
        finally:
            for n in nodes:
                stop_node(n)
    print("\nsummary:", "all targets met" if ok else "some targets missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
