"""Wire benchmark: syft-kernel against raw pyzmq with the same socket setup, in one run.

Measures, each against a raw baseline started in its own process:

(a) a remote op round trip (``ptr + 1`` on a 10-element float64 asset, metadata back) against a
    raw DEALER/ROUTER echo of a small two-frame message; CURVE on both, a ZAP authenticator
    with a callback on both, same transport (ipc and tcp);
(b) the owner's ``get()`` of 1, 64 and 256 MiB float64 arrays against a raw zero-copy transfer
    of the same bytes (``send(copy=False)`` / ``recv(copy=False)`` / ``np.frombuffer``);
(c) the owner's ``get()`` of a 1e6 x 4 float64 DataFrame against raw Arrow IPC over zmq
    (serialize per request on the server, send, receive, read back to pandas).

Run ``python bench/bench_wire.py`` (``--quick`` for a smoke run of well under a minute).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import zmq
from common import print_machine as print_machine_common  # noqa: E402
from common import (
    stop_node,  # noqa: E402
    verdict,
)
from zmq.auth.thread import ThreadAuthenticator

import syft_kernel as sk

MiB = 1024**2
SEED = 20240601
ZAP_DOMAIN = "bench"
FRAME_ROWS = 1_000_000
SMALL_ELEMENTS = 10
# the raw echo mirrors the size of a syft "run" request: a short header frame and a body frame
ECHO_FRAMES = [b"echo" + b"h" * 28, b"b" * 128]

TARGET_RT_RATIO = 3.0  # (a): syft p50 at most 3x raw p50
TARGET_THROUGHPUT = 0.5  # (b), (c): syft throughput at least 50% of raw


# ---------------------------------------------------------------- data (same bytes everywhere)


def make_array(nbytes: int) -> np.ndarray:
    """A float64 array of ``nbytes`` bytes, identical in every process (seeded)."""
    return np.random.default_rng(SEED + nbytes).standard_normal(nbytes // 8)


def make_frame(rows: int) -> pd.DataFrame:
    """A ``rows`` x 4 float64 DataFrame, identical in every process (seeded)."""
    rng = np.random.default_rng(SEED)
    return pd.DataFrame({c: rng.standard_normal(rows) for c in "abcd"})


# ---------------------------------------------------------------- raw baseline server


class _AllowKeys:
    """ZAP credentials provider: admit only the given Z85 public keys (as the node does)."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key.decode("ascii") in self.keys


def _arrow_ipc(frame: pd.DataFrame) -> pa.Buffer:
    """Serialize a DataFrame as one Arrow IPC stream."""
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def raw_server(
    conn: Connection,
    server_public: bytes,
    server_secret: bytes,
    client_public: str,
    ipc_path: str,
    sizes: list[int],
    rows: int,
) -> None:
    """The baseline: a ROUTER with CURVE and a ZAP callback, bound on tcp and ipc.

    Requests: ``[echo…, payload]`` is echoed; ``[array, N]`` answers the N-byte array zero-copy;
    ``[arrow]`` answers the frame as a freshly serialized Arrow IPC stream; ``[stop]`` ends.
    """
    arrays = {n: make_array(n) for n in sizes}
    frame = make_frame(rows)
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_AllowKeys({client_public}))
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey = server_secret
    sock.curve_publickey = server_public
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.setsockopt(zmq.MAXMSGSIZE, 16 * 1024**3)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.linger = 1000
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.bind(f"ipc://{ipc_path}")
    conn.send(port)
    try:
        while True:
            frames = sock.recv_multipart(copy=False)
            ident, kind = frames[0], frames[1].bytes
            if kind.startswith(b"echo"):
                sock.send_multipart(frames, copy=False)
            elif kind == b"array":
                sock.send_multipart([ident, arrays[int(frames[2].bytes)].data], copy=False)
            elif kind == b"arrow":
                sock.send_multipart([ident, _arrow_ipc(frame)], copy=False)
            elif kind == b"stop":
                sock.send_multipart([ident, b"bye"])
                break
    finally:
        sock.close(linger=1000)
        auth.stop()
        ctx.term()


@dataclass
class RawClient:
    """A DEALER set up like ``syft_kernel.Client``'s socket (CURVE, linger 0)."""

    sock: zmq.Socket

    @classmethod
    def connect(cls, address: str, server_public: bytes, public: bytes, secret: bytes) -> RawClient:
        sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.linger = 0
        sock.connect(address)
        return cls(sock)

    def echo(self) -> list[zmq.Frame]:
        self.sock.send_multipart(ECHO_FRAMES)
        return self.sock.recv_multipart(copy=False)

    def get_array(self, nbytes: int) -> np.ndarray:
        self.sock.send_multipart([b"array", str(nbytes).encode()])
        frames = self.sock.recv_multipart(copy=False)
        return np.frombuffer(frames[0].buffer, dtype=np.float64)

    def get_frame(self) -> pd.DataFrame:
        self.sock.send(b"arrow")
        frame = self.sock.recv(copy=False)
        with pa.ipc.open_stream(pa.py_buffer(frame.buffer)) as reader:
            return reader.read_all().to_pandas()

    def stop_server(self) -> None:
        self.sock.send(b"stop")
        if self.sock.poll(10_000):
            self.sock.recv()

    def close(self) -> None:
        self.sock.close(linger=0)


# ---------------------------------------------------------------- measuring


@dataclass
class Latency:
    """Round-trip samples in microseconds."""

    samples: list[float]

    def pct(self, q: float) -> float:
        return float(np.percentile(self.samples, q))


@dataclass
class Config:
    """How much to run."""

    iterations: int
    warmup: int
    chunk: int
    sizes_mib: list[int]
    reps: int
    reps_big: int
    quick: bool


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def time_calls(fn: Callable[[], Any], n: int, keep: list[Any] | None = None) -> list[float]:
    """Time ``n`` calls of ``fn`` in µs; results go to ``keep`` or are dropped at once."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        r = fn()
        out.append((clock() - t0) / 1e3)
        if keep is not None:
            keep.append(r)
        del r
    return out


def one_call_seconds(fn: Callable[[], Any]) -> float:
    """Wall time of one call of ``fn`` in seconds (the result is dropped after timing)."""
    t0 = time.perf_counter()
    r = fn()
    dt = time.perf_counter() - t0
    del r
    return dt


# ---------------------------------------------------------------- the three benchmarks


def bench_round_trip(client: sk.Client, raw: RawClient, cfg: Config) -> dict[str, Latency]:
    """(a): ``ptr + 1``, a bare ``hello`` call and the raw echo, interleaved in short chunks so
    load drifts hit all of them alike.

    "kept alive": results stay in a list during the chunk and are freed after it (their "del"
    messages are drained by a synchronous call before the next chunk), so no "del" traffic
    overlaps a timed call. "freed each": each result is dropped right after its timed call, as
    in ``x = ptr + 1`` in a loop, so its one-way "del" overlaps the next call.
    """
    ptr: Any = client.datasets["bench"]["small"]  # Any: its operators are set dynamically
    kept: list[Any] = []
    cases: dict[str, Callable[[], Any]] = {
        "raw zmq echo": raw.echo,
        "ptr + 1 (kept alive)": lambda: ptr + 1,
        "ptr + 1 (freed each)": lambda: ptr + 1,
        "client.call('hello')": lambda: client.call("hello"),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm-up
        time_calls(fn, cfg.warmup)
    client.stats()  # let the node drain the "del" messages of the warm-up
    gc.collect()
    for n in _chunks(cfg.iterations, cfg.chunk):
        for name, fn in cases.items():
            keep = kept if name.endswith("(kept alive)") else None
            samples[name] += time_calls(fn, n, keep)
        kept.clear()  # frees them: one "del" message each, outside the timed loops
        client.stats()  # a synchronous call: the node has handled every "del" before we go on
    return {k: Latency(v) for k, v in samples.items()}


@dataclass
class Throughput:
    """Median seconds per transfer of ``nbytes``, syft and raw."""

    nbytes: int
    syft_s: float
    raw_s: float

    @property
    def syft_gbs(self) -> float:
        return self.nbytes / self.syft_s / 1e9

    @property
    def raw_gbs(self) -> float:
        return self.nbytes / self.raw_s / 1e9

    @property
    def ratio(self) -> float:
        return self.raw_s / self.syft_s


def _median_pair(syft: Callable[[], Any], raw: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median time of ``syft`` and ``raw``, alternating them (one untimed warm-up each)."""
    syft()
    raw()
    ts, tr = [], []
    for _ in range(reps):
        gc.collect()
        ts.append(one_call_seconds(syft))
        gc.collect()
        tr.append(one_call_seconds(raw))
    return float(np.median(ts)), float(np.median(tr))


def bench_arrays(client: sk.Client, raw: RawClient, arrays: dict[int, np.ndarray], cfg: Config) -> list[Throughput]:
    """(b): owner's ``get()`` of each array asset against the raw zero-copy transfer."""
    out = []
    ds = client.datasets["bench"]
    for nbytes, expected in arrays.items():
        ptr = ds[f"a{nbytes // MiB}"]
        same = np.array_equal(ptr.get(), expected)
        if not (same and np.array_equal(raw.get_array(nbytes), expected)):
            raise AssertionError(f"the {nbytes // MiB} MiB arrays differ between syft and raw")
        reps = cfg.reps_big if nbytes >= 256 * MiB else cfg.reps
        syft_s, raw_s = _median_pair(ptr.get, partial(raw.get_array, nbytes), reps)
        out.append(Throughput(nbytes, syft_s, raw_s))
    return out


def bench_frame(client: sk.Client, raw: RawClient, expected: pd.DataFrame, cfg: Config) -> Throughput:
    """(c): owner's ``get()`` of the DataFrame asset against raw Arrow IPC over zmq."""
    ptr = client.datasets["bench"]["frame"]
    pd.testing.assert_frame_equal(ptr.get(), expected)
    pd.testing.assert_frame_equal(raw.get_frame(), expected)
    syft_s, raw_s = _median_pair(ptr.get, raw.get_frame, cfg.reps)
    return Throughput(int(expected.memory_usage(index=False).sum()), syft_s, raw_s)


# ---------------------------------------------------------------- reporting


def print_machine() -> None:
    """The machine and library versions, so runs can be compared."""
    print_machine_common(
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, CURVE {zmq.has('curve')}; "
        f"numpy {np.__version__}, pandas {pd.__version__}, pyarrow {pa.__version__}; "
        f"syft-kernel {sk.__version__}"
    )


def print_round_trips(results: dict[str, dict[str, Latency]], cfg: Config) -> dict[str, dict[str, float]]:
    """Table (a); returns the p50 ratio of each ``ptr + 1`` variant per transport."""
    print(
        f"\n(a) remote op round trip, µs ({cfg.iterations} iterations after {cfg.warmup} "
        f"warm-up, interleaved in chunks of {cfg.chunk})"
    )
    print(
        f"{'transport':<9}  {'path':<22} {'p50':>8} {'p99':>8} {'p50-raw':>8}  "
        f"{'p50 ratio':>9} {'p99 ratio':>9}  target p50 <= {TARGET_RT_RATIO:g}x"
    )
    ratios: dict[str, dict[str, float]] = {}
    for transport, lat in results.items():
        base = lat["raw zmq echo"]
        for name, v in lat.items():
            r50, r99 = v.pct(50) / base.pct(50), v.pct(99) / base.pct(99)
            extra = v.pct(50) - base.pct(50)
            mark = ""
            if name.startswith("ptr"):
                mark = verdict(r50 <= TARGET_RT_RATIO)
                ratios.setdefault(name, {})[transport] = r50
            print(
                f"{transport:<9}  {name:<22} {v.pct(50):8.1f} {v.pct(99):8.1f} {extra:+8.1f}  "
                f"{r50:8.2f}x {r99:8.2f}x  {mark}"
            )
    return ratios


def print_throughputs(title: str, rows: list[tuple[str, str, Throughput]]) -> None:
    """A throughput table: syft vs raw per transport and size."""
    print(f"\n{title}")
    print(
        f"{'transport':<9}  {'payload':<16} {'syft ms':>9} {'raw ms':>9} {'syft GB/s':>10} "
        f"{'raw GB/s':>9} {'syft/raw':>9}  target >= {TARGET_THROUGHPUT:.0%}"
    )
    for transport, label, t in rows:
        print(
            f"{transport:<9}  {label:<16} {t.syft_s * 1e3:9.1f} {t.raw_s * 1e3:9.1f} "
            f"{t.syft_gbs:10.3f} {t.raw_gbs:9.3f} {t.ratio:8.0%}  "
            f"{verdict(t.ratio >= TARGET_THROUGHPUT)}"
        )


# ---------------------------------------------------------------- setup and main


@contextmanager
def raw_baseline(folder: Path, sizes: list[int]) -> Iterator[tuple[dict[str, str], bytes, bytes, bytes]]:
    """Start the raw server in a spawned process; yield its addresses and the CURVE keys."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    ipc_path = str(folder / "raw.ipc")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=raw_server,
        daemon=True,
        args=(child, server_public, server_secret, client_public.decode(), ipc_path, sizes, FRAME_ROWS),
    )
    proc.start()
    port: int | None = None
    try:
        if not parent.poll(120):
            raise RuntimeError("the raw baseline server did not start within 120 s")
        port = parent.recv()
        addresses = {"ipc": f"ipc://{ipc_path}", "tcp": f"tcp://127.0.0.1:{port}"}
        yield addresses, server_public, client_public, client_secret
    finally:
        if port is not None and proc.is_alive():
            stopper = RawClient.connect(f"tcp://127.0.0.1:{port}", server_public, client_public, client_secret)
            stopper.stop_server()
            stopper.close()
            proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)


def main(argv: list[str] | None = None) -> int:
    """Run all three benchmarks over ipc and tcp and print the tables and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, no 256 MiB array: a smoke run")
    parser.add_argument(
        "--iterations", type=int, default=None, help="round trips per path and transport (default 2000, quick 300)"
    )
    args = parser.parse_args(argv)
    cfg = Config(300, 50, 10, [1, 64], 3, 3, True) if args.quick else Config(2000, 200, 10, [1, 64, 256], 7, 5, False)
    if args.iterations:
        cfg.iterations = args.iterations
    print_machine()
    started = time.perf_counter()
    sizes = [m * MiB for m in cfg.sizes_mib]
    arrays = {n: make_array(n) for n in sizes}
    frame = make_frame(FRAME_ROWS)
    tmp = Path(tempfile.mkdtemp(prefix="syftbench-"))
    node = None
    clients: list[Any] = []
    try:
        with raw_baseline(tmp, sizes) as (addresses, server_public, public, secret):
            node = sk.start_node(tmp / "node", name="bench")
            owner = node.login()
            owner.datasets.upload(
                "bench",
                assets={
                    "small": np.arange(SMALL_ELEMENTS, dtype=np.float64),
                    "frame": frame,
                    **{f"a{n // MiB}": a for n, a in arrays.items()},
                },
                mock={
                    "small": np.zeros(SMALL_ELEMENTS),
                    "frame": frame.head(100),
                    **{f"a{n // MiB}": a[:100] for n, a in arrays.items()},
                },
                description="wire benchmark data",
            )
            owner.close()
            transports = {"ipc": node.login(), "tcp": node.login(transport="tcp")}
            if not transports["ipc"].address.startswith("ipc://"):
                print(f"note: no ipc:// address for the node ({transports['ipc'].address}); measuring tcp only")
                transports["ipc"].close()
                del transports["ipc"]
            clients = list(transports.values())
            print(
                f"setup {time.perf_counter() - started:.1f} s (node pid {node.proc.pid}, "
                f"raw server and node each in their own process); node log level INFO"
            )
            rt: dict[str, dict[str, Latency]] = {}
            arr_rows: list[tuple[str, str, Throughput]] = []
            frame_rows: list[tuple[str, str, Throughput]] = []
            for transport, client in transports.items():
                raw = RawClient.connect(addresses[transport], server_public, public, secret)
                raw.echo()  # handshake done before timing
                rt[transport] = bench_round_trip(client, raw, cfg)
                arr_rows += [
                    (transport, f"{t.nbytes // MiB} MiB float64", t) for t in bench_arrays(client, raw, arrays, cfg)
                ]
                f = bench_frame(client, raw, frame, cfg)
                frame_rows.append((transport, f"{FRAME_ROWS:.0e} x 4 float64", f))
                raw.close()
    finally:
        for c in clients:
            c.close()
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = print_round_trips(rt, cfg)
    print_throughputs(
        f"(b) get() of float64 arrays vs raw zero-copy zmq (median of {cfg.reps}, "
        f"{cfg.reps_big} for 256 MiB; GB/s = bytes / wall time of one call)",
        arr_rows,
    )
    print_throughputs(
        f"(c) get() of a DataFrame vs raw Arrow IPC over zmq (median of {cfg.reps}; GB/s of the 32 MB of column data)",
        frame_rows,
    )

    print("\nsummary")
    for variant, by_transport in ratios.items():
        detail = ", ".join(f"{t} {r:.2f}x" for t, r in by_transport.items())
        print(
            f"target (a) {variant} p50 <= {TARGET_RT_RATIO:g}x raw round trip: {detail} -> "
            f"{verdict(max(by_transport.values()) <= TARGET_RT_RATIO)}"
        )
    for label, rows in (("(b) array get()", arr_rows), ("(c) DataFrame get()", frame_rows)):
        worst = min(rows, key=lambda r: r[2].ratio)
        print(
            f"target {label} >= {TARGET_THROUGHPUT:.0%} of raw throughput: worst "
            f"{worst[2].ratio:.0%} ({worst[0]}, {worst[1]}) -> "
            f"{verdict(worst[2].ratio >= TARGET_THROUGHPUT)}"
        )
    print(f"total {time.perf_counter() - started:.1f} s{' (quick)' if cfg.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
