"""The node against an earlier version of itself, in the same run: ``hello`` and ``ptr + 1`` p50.

    python bench/bench_server.py --baseline c2de8aa     # any git ref of this repository

The baseline's package is exported from git into a temporary folder (with the same
``package-dir`` layout as ``pyproject.toml``) and its node runs from there; the current node runs
from the working tree. The client is today's for both (the wire protocol is the same), and the
two are measured in alternating chunks so machine noise falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import print_machine, stop_node, verdict

from syft_kernel.launcher import start_node

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {
    "syft_kernel": "syft_kernel",
    "core": "syft_kernel/core",
    "node": "syft_kernel/node",
    "widgets": "syft_kernel/widgets",
    "extension": "syft_kernel/extension",
}


def export(ref: str, into: Path) -> Path:
    """The package of git ``ref`` as an importable folder (for ``PYTHONPATH``)."""
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    pkg = into / "pkg"
    for src, dst in LAYOUT.items():
        if (tree / src).is_dir():
            shutil.copytree(tree / src, pkg / dst)
    return pkg


def pin(nodes: Any) -> bool:
    """Client on CPU 0, every thread of every node on CPU 1: on a 2-core box where the threads
    land decides round trips more than the code does (two identical nodes differ by 25% unpinned)."""
    if len(os.sched_getaffinity(0)) < 2:
        return False
    os.sched_setaffinity(0, {0})
    for node in nodes:
        for tid in os.listdir(f"/proc/{node.proc.pid}/task"):
            os.sched_setaffinity(int(tid), {1})
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git ref to compare with (default HEAD~1)")
    parser.add_argument("--chunks", type=int, default=40, help="alternating chunks of 25 calls each")
    parser.add_argument("--target", type=float, default=1.10, help="allowed ratio now / baseline")
    args = parser.parse_args(argv)
    import pyarrow
    import zmq

    print_machine(f"pyzmq {zmq.__version__}, numpy {np.__version__}, pyarrow {pyarrow.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        base_pkg = export(args.baseline, Path(tmp))
        saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
        os.environ["PYTHONPATH"] = str(base_pkg)  # the baseline node imports its own package,
        os.chdir(tmp)  # and `python -m` must not find this checkout's first, from the current folder
        try:
            base = start_node(Path(tmp) / "base", name="base", port=0)
            probe = subprocess.run(
                [sys.executable, "-c", "import syft_kernel.node.server as s; print(s.__file__)"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if not probe.startswith(str(base_pkg)):
                raise SystemExit(f"the baseline node would import {probe}, not the baseline")
        finally:
            os.chdir(cwd)
            if saved is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = saved
        now = start_node(Path(tmp) / "now", name="now", port=0)
        nodes = {"baseline": base, "now": now}
        pinned = pin(nodes.values())
        clients, pointers = {}, {}
        for label, node in nodes.items():
            clients[label] = node.login()
            clients[label].datasets.upload("x", assets={"m": np.arange(12.0).reshape(3, 4)}, description="x")
            pointers[label] = clients[label].datasets["x"]["m"]
        times: dict[tuple[str, str], list[float]] = {}
        for chunk in range(args.chunks):
            for label in ("baseline", "now") if chunk % 2 else ("now", "baseline"):
                client, m = clients[label], pointers[label]
                for kind in ("hello", "ptr + 1"):
                    out = times.setdefault((label, kind), [])
                    for _ in range(25):
                        t = time.perf_counter()
                        if kind == "hello":
                            client.call("hello")
                        else:
                            m + 1  # noqa: B018  (the op is the measurement)
                        out.append(time.perf_counter() - t)
        for client in clients.values():
            client.close()
        for node in nodes.values():
            stop_node(node)
    print(
        f"\nnode now vs baseline {args.baseline}: p50 over {args.chunks * 25} calls each, interleaved"
        + (" (client on CPU 0, every thread of both nodes on CPU 1)" if pinned else "")
    )
    print(f"{'call':10s} {'baseline µs':>12s} {'now µs':>10s} {'ratio':>7s}  target <= {args.target:.2f}x")
    ok = True
    for kind in ("hello", "ptr + 1"):
        b = statistics.median(times[("baseline", kind)]) * 1e6
        n = statistics.median(times[("now", kind)]) * 1e6
        ok &= n / b <= args.target
        print(f"{kind:10s} {b:12.1f} {n:10.1f} {n / b:6.2f}x  {verdict(n / b <= args.target)}")
    print(f"verdict: {verdict(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
