"""DP benchmark: a DP mean of 1e6 floats through the node against OpenDP in-process, in one run.

A data owner uploads a 1e6-row DataFrame with one float64 column ``x`` (no ``subject_column``);
a data scientist with a large budget calls ``ptr["x"].dp.mean(epsilon=0.1, bounds=(0, 1))``
again and again. The node computes exact aggregates (clamped sum and count), charges its SQLite
ledger, then releases both through OpenDP's Laplace mechanism (``node/dp.py``).

Baselines, called in this process on the same values as a NumPy float64 array:

- the OpenDP recipe of FIELD_NOTES: ``space >> then_clamp >> then_resize >> then_mean >>
  then_laplace``, built once (scale set for epsilon 0.1) and invoked repeatedly: the target
  is the node's p50 at most 1.5x this one's;
- a mirror of what the node computes: clamp + sum and count in NumPy, then ``dp.m.make_laplace``
  on the two aggregates with epsilon / 2 each (measurements built per call, as the node does).

The node and the baselines are interleaved in short chunks so load drifts hit all alike.
Informational, no target: the same query on a dataset with ``subject_column`` (subject ids
1..1e6: contribution bounding), and with ``subject_limit`` too (individual accounting: a
per-subject loss for every row, read and written in the ledger). The latter is measured on a
ladder of sizes up to 1e6 rows and stops climbing when the next size is projected (from the
growth seen so far) to take over half of ``--limit-timeout`` per call.

Run ``python bench/bench_dp.py`` (``--quick`` for a smoke run of well under a minute).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.metadata as md
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import opendp.prelude as dp
import pandas as pd
from common import print_machine as print_machine_common  # noqa: E402
from common import (
    stop_node,  # noqa: E402
    verdict,
)

import syft_kernel as sk
from syft_kernel.core.keys import generate_keypair, write_keypair

SEED = 20240601
ROWS = 1_000_000
EPSILON = 0.1
BOUNDS = (0.0, 1.0)
BUDGET = 1e5  # the node accepts budgets below 1e6; 0.1 per mean leaves room for 1e6 queries
SUBJECT_LIMIT = 1e5  # per-subject limit: far above what the run spends, so nobody is filtered
TARGET_RATIO = 1.5  # node p50 at most 1.5x the in-process OpenDP recipe's p50

RECIPE = "in-process: OpenDP recipe"
MIRROR = "in-process: node mirror"
NODE = 'node: ptr["x"].dp.mean'
NODE_COL = "node: col.dp.mean (col kept)"


# ---------------------------------------------------------------- data and in-process baselines


def make_values(rows: int) -> np.ndarray:
    """``rows`` float64 values, a few outside the bounds so clamping has work (seeded)."""
    return np.random.default_rng(SEED).uniform(-0.05, 1.05, rows)


def recipe_measurement(rows: int, epsilon: float) -> Any:
    """FIELD_NOTES' framework recipe for a clamped mean with Laplace noise, built once.

    The scale comes from the chain's own privacy map at scale 1 (the map is linear in 1/scale);
    the built measurement is checked to spend at most ``epsilon`` on neighbouring datasets.
    """
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()

    def build(scale: float) -> Any:
        return (
            space
            >> dp.t.then_clamp(BOUNDS)
            >> dp.t.then_resize(size=rows, constant=0.5)
            >> dp.t.then_mean()
            >> dp.m.then_laplace(scale=scale)
        )

    meas = build(build(1.0).map(1) / epsilon)
    assert meas.map(1) <= epsilon * (1 + 1e-9)
    return meas


def mirror_mean(x: np.ndarray, epsilon: float) -> float:
    """What the node computes for a mean, without the node: clamp + sum and count in NumPy, then
    OpenDP Laplace on each aggregate with half the epsilon (sensitivities max|bound| and 1)."""
    lo, hi = BOUNDS
    total, count = float(np.clip(x, lo, hi).sum()), float(len(x))
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=1)
    half = epsilon / 2
    noisy = []
    for value, sensitivity in ((total, max(abs(lo), abs(hi))), (count, 1.0)):
        meas = dp.m.make_laplace(domain, dp.l1_distance(T=float), sensitivity / half)
        noisy.append(meas([value])[0])
    return float(np.clip(noisy[0] / max(noisy[1], 1.0), lo, hi))


def pin_malloc() -> str:
    """Keep glibc malloc from handing the big temporaries back to the OS between calls.

    With glibc's dynamic thresholds a long-running process drifts, after some tens of calls,
    into a state where every call of the recipe maps ~20 MB afresh (~5,000 page faults) and runs
    ~2x slower (measured: 8 vs 19 ms). Pinning the trim and mmap thresholds keeps the in-process
    baselines in their fast, steady state: the stricter comparison. The node runs as deployed.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "allocator not pinned (no glibc mallopt)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    if mallopt(m_trim_threshold, 1 << 30) == 1 and mallopt(m_mmap_threshold, 32 << 20) == 1:
        return "in-process malloc pinned (trim 1 GiB, mmap 32 MiB; the node's is not)"
    return "allocator not pinned (mallopt refused)"


# ---------------------------------------------------------------- measuring


@dataclass
class Latency:
    """Call times in milliseconds, in call order."""

    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.samples, q)) if self.samples else math.nan


@dataclass
class Config:
    """How much to run."""

    iterations: int  # timed calls per case in the main comparison
    warmup: int
    chunk: int
    subject_reps: int  # timed calls with subject_column
    limit_reps: int  # timed calls per size with subject_limit
    limit_sizes: list[int]
    limit_timeout: float  # s: the longest one call with subject_limit may take
    quick: bool


def time_calls(fn: Callable[[], Any], n: int, results: list[float] | None = None) -> list[float]:
    """Time ``n`` calls of ``fn`` in ms; the values go to ``results`` (for the sanity check)."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        r = fn()
        out.append((clock() - t0) / 1e6)
        if results is not None:
            results.append(float(r))
        del r
    return out


def check(name: str, values: list[float], truth: float, rows: int) -> None:
    """Every release is close to the exact clamped mean (a guard against measuring a no-op)."""
    tol = max(1e-3, 2000.0 / rows)  # Laplace scale 20 on a sum of ``rows`` values: far inside
    bad = [v for v in values if not abs(v - truth) <= tol]
    if bad:
        raise AssertionError(
            f"{name}: {len(bad)} of {len(values)} results are off the clamped "
            f"mean {truth:.6f} by more than {tol:g} (e.g. {bad[0]!r})"
        )


def bench_main(ptr: Any, col: Any, x: np.ndarray, cfg: Config, truth: float) -> dict[str, Latency]:
    """The node's mean against both in-process baselines, interleaved in chunks."""
    recipe = recipe_measurement(len(x), EPSILON)
    cases: dict[str, Callable[[], Any]] = {
        RECIPE: lambda: recipe(x),
        MIRROR: lambda: mirror_mean(x, EPSILON),
        NODE: lambda: ptr["x"].dp.mean(epsilon=EPSILON, bounds=BOUNDS),
        NODE_COL: lambda: col.dp.mean(epsilon=EPSILON, bounds=BOUNDS),
    }
    for fn in cases.values():
        time_calls(fn, cfg.warmup)
    out = {k: Latency() for k in cases}
    values: dict[str, list[float]] = {k: [] for k in cases}
    done = 0
    while done < cfg.iterations:
        n = min(cfg.chunk, cfg.iterations - done)
        for name, fn in cases.items():
            gc.collect()
            out[name].samples += time_calls(fn, n, values[name])
        done += n
    for name, v in values.items():
        check(name, v, truth, len(x))
    return out


@dataclass
class LadderStep:
    """The subject_limit case at one size: timed calls, or why it was not run."""

    rows: int
    latency: Latency = field(default_factory=Latency)
    note: str = ""


def bench_limit_ladder(node: Any, owner: sk.Client, key: Path, cfg: Config) -> list[LadderStep]:
    """``subject_limit`` set: climb the sizes while the next one is projected to take at most half
    the timeout per call (a call that still times out ends the climb).

    Each size is its own dataset (uploaded when reached); the first timed call at a size is
    also the one that first writes every subject's loss row in the ledger.
    """
    steps: list[LadderStep] = []
    exponent = 1.0
    with sk.login(node.connection_file, key=key, timeout=cfg.limit_timeout) as ds:
        for rows in cfg.limit_sizes:
            step = LadderStep(rows)
            steps.append(step)
            done = [s for s in steps[:-1] if s.latency.samples]
            if done:
                last = done[-1]
                if len(done) >= 2:
                    prev = done[-2]
                    exponent = max(
                        1.0, math.log(last.latency.pct(50) / prev.latency.pct(50)) / math.log(last.rows / prev.rows)
                    )
                projected = last.latency.pct(50) / 1e3 * (rows / last.rows) ** exponent
                if projected > cfg.limit_timeout / 2:  # a margin: the growth may steepen
                    step.note = (
                        f"skipped: projected {_human(projected)} per call "
                        f"(time ~ rows^{exponent:.2f}) > half the "
                        f"{cfg.limit_timeout:g} s limit"
                    )
                    continue
            x = make_values(rows)
            name = f"limited-{rows}"
            frame = pd.DataFrame({"x": x, "id": np.arange(1, rows + 1)})
            owner.datasets.upload(
                name,
                assets={"t": frame},
                mock={"t": frame.head(100)},
                subject_column="id",
                subject_limit=SUBJECT_LIMIT,
                description="DP benchmark: individual accounting",
            )
            owner.budget.set("alice", name, epsilon=BUDGET)
            ptr = ds.datasets[name]["t"]
            ptr["x"]  # loads the asset on the node, untimed
            values: list[float] = []
            try:
                step.latency.samples = time_calls(
                    lambda p=ptr: p["x"].dp.mean(epsilon=EPSILON, bounds=BOUNDS), cfg.limit_reps, values
                )
            except sk.NodeUnavailable:
                step.note = f"timed out: one call took over {cfg.limit_timeout:g} s"
                break  # the node is still busy with that call
            check(name, values, float(np.clip(x, *BOUNDS).mean()), rows)
    return steps


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- reporting


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def print_machine() -> None:
    """The machine and library versions, so runs can be compared."""
    print_machine_common(
        f"opendp {_version('opendp')}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"pyarrow {_version('pyarrow')}, pyzmq {_version('pyzmq')}; "
        f"syft-kernel {sk.__version__}"
    )
    print(f"node folder under {tempfile.gettempdir()} (the ledger commits are fsync'd there)")


def print_table(title: str, rows: list[tuple[str, Latency]], base: Latency, target_row: str | None = None) -> None:
    """A latency table with each row's p50 and p99 as a multiple of ``base``'s."""
    print(f"\n{title}")
    print(f"{'case':<34} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'p50 ratio':>10} {'p99 ratio':>10}")
    for name, lat in rows:
        r50, r99 = lat.pct(50) / base.pct(50), lat.pct(99) / base.pct(99)
        mark = f"  {verdict(r50 <= TARGET_RATIO)}" if name == target_row else ""
        print(f"{name:<34} {len(lat.samples):>4} {lat.pct(50):9.2f} {lat.pct(99):9.2f} {r50:9.2f}x {r99:9.2f}x{mark}")


# ---------------------------------------------------------------- setup and main


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and the informational cases; print the tables and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="timed calls per case in the main comparison (default 300, quick 40)",
    )
    parser.add_argument(
        "--default-malloc", action="store_true", help="leave this process's malloc thresholds dynamic (see pin_malloc)"
    )
    parser.add_argument(
        "--limit-timeout",
        type=float,
        default=None,
        help="longest call allowed with subject_limit, s (default 120, quick 20)",
    )
    args = parser.parse_args(argv)
    cfg = (
        Config(40, 5, 10, 8, 2, [10_000, 20_000, 100_000, ROWS], 20.0, True)
        if args.quick
        else Config(300, 20, 10, 40, 3, [10_000, 30_000, 100_000, 300_000, ROWS], 120.0, False)
    )
    if args.iterations:
        cfg.iterations = args.iterations
    if args.limit_timeout:
        cfg.limit_timeout = args.limit_timeout
    dp.enable_features("contrib")
    print_machine()
    print("default glibc malloc in this process" if args.default_malloc else pin_malloc())
    started = time.perf_counter()
    x = make_values(ROWS)
    truth = float(np.clip(x, *BOUNDS).mean())
    ids = np.arange(1, ROWS + 1)
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-dp-"))
    node = None
    clients: list[sk.Client] = []
    releases = 0
    try:
        node = sk.start_node(tmp / "node", name="bench")
        owner = node.login()
        clients.append(owner)
        plain = pd.DataFrame({"x": x})
        owner.datasets.upload(
            "plain", assets={"t": plain}, mock={"t": plain.head(100)}, description="DP benchmark: one float column"
        )
        subjects = pd.DataFrame({"x": x, "id": ids})
        owner.datasets.upload(
            "subjects",
            assets={"t": subjects},
            mock={"t": subjects.head(100)},
            subject_column="id",
            description="DP benchmark: one row per subject",
        )
        key, public = write_keypair(generate_keypair("alice"), tmp / "users")
        owner.users.add("alice", public_key=public)
        for name in ("plain", "subjects"):
            owner.budget.set("alice", name, epsilon=BUDGET)
        ds = sk.login(node.connection_file, key=key)
        clients.append(ds)
        ptr: Any = ds.datasets["plain"]["t"]
        col = ptr["x"]  # also loads the asset on the node, untimed
        print(
            f"setup {time.perf_counter() - started:.1f} s (node pid {node.proc.pid}, "
            f"scientist over {ds.address.split(':', 1)[0]}); node log level INFO"
        )

        main_lat = bench_main(ptr, col, x, cfg, truth)
        releases = int(ds.budget["plain"]["releases"])

        sptr: Any = ds.datasets["subjects"]["t"]
        sptr["x"]  # loads the asset, untimed
        subject_fn = lambda: sptr["x"].dp.mean(epsilon=EPSILON, bounds=BOUNDS)  # noqa: E731
        time_calls(subject_fn, max(1, cfg.warmup // 5))
        subject_values: list[float] = []
        subject_lat = Latency(time_calls(subject_fn, cfg.subject_reps, subject_values))
        check("subject_column", subject_values, truth, ROWS)

        ladder = bench_limit_ladder(node, owner, key, cfg)
    finally:
        for c in clients:
            c.close()
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)

    base = main_lat[RECIPE]
    print_table(
        f"DP mean of {ROWS:.0e} float64, epsilon {EPSILON:g}, bounds {BOUNDS} "
        f"({cfg.iterations} calls per case after {cfg.warmup} warm-up, interleaved in "
        f"chunks of {cfg.chunk}); ratios vs the in-process recipe",
        [(k, v) for k, v in main_lat.items()],
        base,
        target_row=NODE,
    )
    mirror = main_lat[MIRROR]
    node_lat = main_lat[NODE]
    print(
        f"node vs the mirror baseline: p50 {node_lat.pct(50) / mirror.pct(50):.2f}x, "
        f"p99 {node_lat.pct(99) / mirror.pct(99):.2f}x "
        f"(node p50 - mirror p50 = {node_lat.pct(50) - mirror.pct(50):+.2f} ms)"
    )
    first = Latency(node_lat.samples[: cfg.chunk])
    last = Latency(node_lat.samples[-cfg.chunk :])
    print(
        f"ledger growth: node p50 {first.pct(50):.2f} ms in the first chunk, "
        f"{last.pct(50):.2f} ms in the last; {releases} releases charged on 'plain'"
    )

    rows: list[tuple[str, Latency]] = [(NODE + " (no subjects)", node_lat), ("node: with subject_column", subject_lat)]
    print_table(
        f"informational: contribution bounding (subject_column, ids 1..{ROWS:.0e}, "
        f"max 1 row each); ratios vs the in-process recipe",
        rows,
        base,
    )

    print(
        f"\ninformational: individual accounting (subject_column + subject_limit), "
        f"{cfg.limit_reps} calls per size, the first writes every subject's loss row"
    )
    print(f"{'rows':>9} {'n':>3} {'p50 ms':>10} {'max ms':>10} {'ms per 1e3 rows':>16}  note")
    for step in ladder:
        lat = step.latency
        if lat.samples:
            print(
                f"{step.rows:>9} {len(lat.samples):>3} {lat.pct(50):10.1f} "
                f"{max(lat.samples):10.1f} {lat.pct(50) / step.rows * 1e3:16.3f}  {step.note}"
            )
        else:
            print(f"{step.rows:>9} {'-':>3} {'-':>10} {'-':>10} {'-':>16}  {step.note}")

    ratio = node_lat.pct(50) / base.pct(50)
    print("\nsummary")
    print(
        f'target: node ptr["x"].dp.mean p50 <= {TARGET_RATIO:g}x the in-process OpenDP '
        f"recipe: {node_lat.pct(50):.2f} ms vs {base.pct(50):.2f} ms = {ratio:.2f}x -> "
        f"{verdict(ratio <= TARGET_RATIO)}"
    )
    print(f"total {time.perf_counter() - started:.1f} s{' (quick)' if cfg.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
