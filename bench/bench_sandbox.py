"""Sandbox benchmark: a code request from the owner's ``approve()`` to the scientist's result.

A data scientist submits a small numpy function on a 1,000-element float64 asset; the owner
(its own client, in this process) fetches the request and approves it; the scientist's
``job.result()`` returns the result's pointer and ``get()`` reads it. Timed per run, on
``time.perf_counter``, from just before ``approve()`` to ``get()`` returning. The run goes
through the real node and a real bubblewrap sandbox (namespaces, seccomp, limits). Three ways,
each on its own node:

- ready: the node keeps one sandbox started (the default); each approval comes 1 s after the
  previous result, as an owner reading code would, so the next sandbox is ready;
- back-to-back: the same node, approvals with no pause (the next sandbox is still starting);
- cold: a node with ``SYFT_KERNEL_SANDBOX_PRESTART=0``: every run starts its sandbox.

The baseline, in the same run: what the old way paid per run at least, a plain
``python -c 'import numpy, pandas'`` subprocess (no sandbox, no node). Target: the ready p50 at
most 150 ms. Run ``python bench/bench_sandbox.py`` (20 runs per way; ``--quick`` for 8).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_machine, stop_node, verdict  # noqa: E402

import syft_kernel as sk

TARGET_MS = 150.0
SOURCE = """
def stats(x):
    import numpy as np
    return float(np.mean(x) + np.std(x))
"""


def start(folder: Path, prestart: bool) -> tuple[sk.NodeProcess, Path]:
    """A node with the asset and a scientist; ``prestart=False`` keeps no sandbox ready."""
    old = os.environ.get("SYFT_KERNEL_SANDBOX_PRESTART")
    os.environ["SYFT_KERNEL_SANDBOX_PRESTART"] = "1" if prestart else "0"
    try:
        node = sk.start_node(folder / "node", name="bench")
    finally:
        if old is None:
            os.environ.pop("SYFT_KERNEL_SANDBOX_PRESTART")
        else:
            os.environ["SYFT_KERNEL_SANDBOX_PRESTART"] = old
    with node.login() as admin:
        admin.datasets.upload(
            "bench",
            assets={"x": np.arange(1000, dtype=np.float64)},
            mock={"x": np.zeros(1000)},
            description="sandbox benchmark data",
        )
        key, pub = sk.write_keypair(sk.generate_keypair("alice"), folder / "users")
        admin.users.add("alice", role="data_scientist", public_key=pub)
    return node, key


def runs(node: sk.NodeProcess, key: Path, n: int, pause: float, warmup: int) -> list[float]:
    """``warmup`` untimed then ``n`` timed runs; ms from approve() to the result read."""
    want = float(np.mean(np.arange(1000.0)) + np.std(np.arange(1000.0)))
    out = []
    with node.login() as owner, sk.login(node.connection_file, key=key) as sci:
        x = sci.datasets["bench"]["x"]
        for i in range(warmup + n):
            info = sci.call(
                "code.submit", {"source": SOURCE, "fn_name": "stats", "inputs": {"x": x.id}, "reason": f"bench {i}"}
            )[0]
            job = sk.Job(sci, info)
            req = owner.requests[job.id]  # the owner reads the request (it signs its content hash)
            time.sleep(pause)
            t0 = time.perf_counter()
            req.approve("bench")
            value = job.result(timeout=120).get()
            ms = (time.perf_counter() - t0) * 1e3
            if abs(value - want) > 1e-9:
                raise AssertionError(f"the run returned {value}, not {want}")
            if i >= warmup:
                out.append(ms)
    return out


def baseline(n: int) -> list[float]:
    """ms for a plain interpreter that imports numpy and pandas (what the old way paid)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, pandas"], check=True)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 runs per way: a smoke run")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per way (default 20)")
    args = parser.parse_args(argv)
    n = args.runs or (8 if args.quick else 20)
    print_machine(f"numpy {np.__version__}; bwrap {_bwrap_version()}; syft-kernel {sk.__version__}")
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-sandbox-"))
    started = time.perf_counter()
    results: dict[str, list[float]] = {}
    try:
        results["python -c 'import numpy, pandas'"] = baseline(n)
        node, key = start(tmp / "warm", prestart=True)
        try:
            results["ready (1 s between runs)"] = runs(node, key, n, pause=1.0, warmup=2)
            results["back-to-back"] = runs(node, key, n, pause=0.0, warmup=1)
        finally:
            stop_node(node)
        node, key = start(tmp / "cold", prestart=False)
        try:
            results["cold (no sandbox ready)"] = runs(node, key, n, pause=0.0, warmup=1)
        finally:
            stop_node(node)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = float(np.percentile(results["python -c 'import numpy, pandas'"], 50))
    print(f"\napprove() -> result read, ms ({n} runs per way, each on a real node and sandbox)")
    print(f"{'way':<36} {'p50':>8} {'p90':>8} {'min':>8} {'max':>8} {'p50/base':>9}")
    for name, v in results.items():
        p50 = float(np.percentile(v, 50))
        print(
            f"{name:<36} {p50:8.1f} {float(np.percentile(v, 90)):8.1f} {min(v):8.1f} {max(v):8.1f} {p50 / base:8.2f}x"
        )
    ready = float(np.percentile(results["ready (1 s between runs)"], 50))
    cold = float(np.percentile(results["cold (no sandbox ready)"], 50))
    print("\nratios")
    print(f"ready p50 / baseline p50: {ready:.0f} / {base:.0f} ms = {ready / base:.2f}x")
    print(f"cold p50 / ready p50: {cold:.0f} / {ready:.0f} ms = {cold / ready:.1f}x")
    print(f"{verdict(ready <= TARGET_MS)}: ready p50 {ready:.0f} ms (target at most {TARGET_MS:.0f} ms)")
    print(f"total {time.perf_counter() - started:.1f} s{' (quick)' if args.quick else ''}")
    return 0


def _bwrap_version() -> str:
    try:
        return subprocess.run(
            [shutil.which("bwrap") or "/usr/bin/bwrap", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.split()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "missing"


if __name__ == "__main__":
    sys.exit(main())
