"""The network: searching a gateway that lists 1,000 datasets of 50 nodes against the same
SQLite query in-process, and one cell over three nodes against the slowest node alone.

    python bench/bench_network.py [--quick] [--part search|cell] [--wait-quiet S] [--rows N]

(1) A real gateway process (``start_gateway``, auto-admit) with 50 nodes registered for real
    (a fresh keypair each, a signed registration over CURVE, built as ``NetworkAgent._register``
    builds it) and 20 listings each (``listing()`` of generated hospital x topic x month
    datasets). ``net.datasets.search`` from ``connect_network`` over a mix of queries (one
    word, two words, tag filters, prefixes), interleaved with three in-process baselines on the
    same ``gateway.db``: ``GatewayDB.search``, its SQL run with plain sqlite3 (no JSON decoding)
    and the bare FTS5 query on the index alone. Targets: gateway p50 <= 3x the same SQL
    in-process, and <= 5 ms. Then where a search's time goes, piece by piece.
(2) Three real nodes with the same kind of data and the same private statistic in one cell
    (every plan sent before waiting on any, as the kernel does) against the slowest node alone.
    Target: <= 1.3x. A CPU-bound statistic and a light one, on loopback and through a relay
    that adds latency each way; with two nodes too, and the CPU the nodes and everything else
    on the machine used meanwhile.
Each way runs interleaved with its baseline in the same process; medians of repeats. Exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq
from common import print_machine, stop_node, verdict

import syft_kernel as sk
from syft_kernel.batch import current, flush_all, set_auto
from syft_kernel.client import Client
from syft_kernel.core import codec, schema
from syft_kernel.core.keys import KeyPair, read_keypair, registration_message
from syft_kernel.core.listing import listing
from syft_kernel.gateway.db import RANK, GatewayDB, match_expression, tag_key
from syft_kernel.network import DatasetHit, SearchResults
from syft_kernel.node.network import GatewayLink

NODES, PER_NODE = 50, 20
CITIES = (
    "leeds york bristol bath oxford cambridge norwich exeter derby leicester "
    "hull durham carlisle lincoln chester truro ipswich coventry salford preston "
    "reading luton swindon dundee bangor"
).split()
KINDS = ("general", "royal")
MONTHS = "january february march april may june july august september october november december".split()
TOPICS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    # topic: (asset, what the description says, columns)
    "birth-records": (
        "births",
        "births with birth weight, gestation and delivery mode",
        [("mother_id", "int64"), ("weeks", "float64"), ("weight", "float64"), ("delivery", "category")],
    ),
    "admissions": (
        "admissions",
        "emergency and elective admissions with ward, length of stay and diagnosis codes",
        [("patient_id", "int64"), ("ward", "category"), ("los_days", "float64"), ("icd10", "object")],
    ),
    "icu-stays": (
        "stays",
        "intensive care stays with ventilation hours, sofa scores and outcome",
        [("patient_id", "int64"), ("ventilation_h", "float64"), ("sofa", "int64"), ("outcome", "category")],
    ),
    "lab-results": (
        "labs",
        "laboratory results: glucose, haemoglobin, creatinine and sodium panels",
        [("patient_id", "int64"), ("glucose", "float64"), ("haemoglobin", "float64"), ("creatinine", "float64")],
    ),
    "prescriptions": (
        "prescriptions",
        "dispensed prescriptions with drug, dose and prescriber specialty",
        [("patient_id", "int64"), ("drug", "object"), ("dose_mg", "float64"), ("specialty", "category")],
    ),
    "radiology": (
        "scans",
        "radiology reports for x-ray, ct and mri scans with turnaround times",
        [("patient_id", "int64"), ("modality", "category"), ("turnaround_h", "float64"), ("finding", "object")],
    ),
    "vaccinations": (
        "doses",
        "vaccination doses given in clinics: vaccine, batch and adverse events",
        [("patient_id", "int64"), ("vaccine", "category"), ("dose_no", "int64"), ("adverse", "bool")],
    ),
    "oncology": (
        "cases",
        "oncology cases with tumour stage, treatment pathway and survival",
        [("patient_id", "int64"), ("stage", "category"), ("pathway", "object"), ("survival_d", "float64")],
    ),
    "cardiology": (
        "ecg",
        "cardiology clinic visits with ecg measurements, blood pressure and heart rate",
        [("patient_id", "int64"), ("systolic", "float64"), ("heart_rate", "float64"), ("qt_ms", "float64")],
    ),
    "outpatients": (
        "visits",
        "outpatient appointments with waiting times, attendance and referral source",
        [("patient_id", "int64"), ("wait_days", "float64"), ("attended", "bool"), ("referral", "category")],
    ),
}
EXTRA = (
    "Pseudonymised at source.",
    "Collected for the regional audit.",
    "Includes a synthetic mock for exploration.",
    "Updated weekly by the data team.",
    "Linked to the maternity and neonatal register.",
    "Counts below five are suppressed in releases.",
)
# (query, tags, kind): one word, two words, a tag filter, a prefix (every word is matched as a prefix)
QUERIES: list[tuple[str, list[str], str]] = [
    ("births", [], "one word"),
    ("cardiology", [], "one word"),
    ("leeds", [], "one word"),
    ("glucose", [], "one word"),
    ("vaccinations", [], "one word"),
    ("oncology", [], "one word"),
    ("birth march", [], "two words"),
    ("icu york", [], "two words"),
    ("radiology mri", [], "two words"),
    ("prescriptions december", [], "two words"),
    ("admissions", ["#March"], "tag filter"),
    ("lab", ["#york", "#2026"], "tag filter"),
    ("", ["#oncology"], "tag filter"),
    ("", ["#royal", "#june"], "tag filter"),
    ("card", [], "prefix"),
    ("vacc", [], "prefix"),
    ("gest", [], "prefix"),
    ("rad oxf", [], "prefix"),
]
KINDS_OF_QUERY = ("one word", "two words", "tag filter", "prefix")
LIMIT = 100  # net.datasets.search's default


# ---------------------------------------------------------------- (1) search: data and nodes
def datasets_of(node: int) -> list[dict[str, Any]]:
    """Node ``node``'s 20 datasets as its database describes them (deterministic)."""
    city, kind = CITIES[node % len(CITIES)], KINDS[node // len(CITIES)]
    rng = random.Random(1000 + node)
    combos = rng.sample([(t, m) for t in TOPICS for m in MONTHS], PER_NODE)
    out = []
    for topic, month in combos:
        asset, what, cols = TOPICS[topic]
        rows = rng.randrange(500, 200_000)
        assets = [
            {
                "name": asset,
                "kind": "DataFrame",
                "columns": [c for c, _ in cols] + ["day"],
                "dtypes": [d for _, d in cols] + ["datetime64[ns]"],
                "shape": [rows, len(cols) + 1],
            }
        ]
        if rng.random() < 0.3:  # some datasets carry a second, smaller asset
            assets.append({"name": "codebook", "kind": "DataFrame", "columns": ["code", "meaning"]})
            assets[-1].update(dtypes=["object", "object"], shape=[rng.randrange(10, 500), 2])
        out.append(
            {
                "name": f"{topic}-{month}-2026",
                "description": f"{month.title()} 2026 {what} at {city.title()} {kind.title()} Hospital. "
                + rng.choice(EXTRA),
                "tags": [f"#{month.title()}", f"#{topic}", f"#{city}", f"#{kind}", "#2026"],
                "assets": assets,
            }
        )
    return out


def register_nodes(connection: dict[str, Any]) -> tuple[float, float]:
    """Join 50 nodes and publish 20 listings each; returns (join s, publish s) in all."""
    joined = published = 0.0
    for i in range(NODES):
        name = f"{CITIES[i % len(CITIES)]}-{KINDS[i // len(CITIES)]}"
        keys = sk.generate_keypair(name)
        link = GatewayLink(connection, keys)
        try:
            t = time.perf_counter()
            reply = link.request(join_body(connection, keys, name, [f"tcp://127.0.0.1:{41000 + i}"]))
            joined += time.perf_counter() - t
            assert reply["status"] == "admitted", reply
            upsert = [listing(d, rows_public=i % 2 == 0) for d in datasets_of(i)]
            t = time.perf_counter()
            reply = link.request(schema.GatewayPublish(upsert=upsert, full=True))
            published += time.perf_counter() - t
            assert reply["datasets"] == PER_NODE, reply
        finally:
            link.close()
    return joined, published


def join_body(connection: dict[str, Any], keys: KeyPair, name: str, addresses: list[str]) -> schema.GatewayJoin:
    """A signed registration, built as ``NetworkAgent._register`` builds it."""
    reg = schema.Registration(
        gateway=connection["name"],
        name=name,
        addresses=addresses,
        public_key=keys.public,
        signing_key=keys.sign_public or "",
        timestamp=time.time(),
        nonce=secrets.token_hex(16),
    ).to_wire()
    return schema.GatewayJoin(registration=reg, signature=keys.sign(registration_message(reg)))


# ---------------------------------------------------------------- (1) search: the ways
def bare_fts(conn: sqlite3.Connection) -> Callable[[str, list[str]], list[Any]]:
    """The bare FTS5 query on the index table alone: the words as GatewayDB matches them, each
    tag as a phrase in the tags column (the gateway matches tags exactly in a side table)."""

    def run(query: str, tags: list[str]) -> list[Any]:
        terms = [match_expression(query)] if query else []
        terms += ['tags : "' + " ".join(tag_key(t).replace("-", " ").split()) + '"' for t in tags]
        sql = (
            "SELECT rowid, name, description, tags, assets FROM listings_fts"
            f" WHERE listings_fts MATCH ? ORDER BY {RANK} LIMIT ?"
        )
        return conn.execute(sql, (" AND ".join(terms), LIMIT)).fetchall()

    return run


def same_sql(conn: sqlite3.Connection) -> Callable[[str, list[str]], list[Any]]:
    """``GatewayDB.search``'s SQL, run with plain sqlite3 and fetched as tuples: no JSON decoding
    of the rows, no dicts (the query as the issue states its baseline)."""
    cols = "l.node, l.name, l.description, l.tags, l.assets, l.has_mock, l.updated_at, n.last_seen"

    def run(query: str, tags: list[str]) -> list[Any]:
        match = match_expression(query)
        where = ["n.status='admitted'"] + ["l.id IN (SELECT listing FROM listing_tags WHERE tag=?)"] * len(tags)
        args = [tag_key(t) for t in tags]
        if match is None:
            sql = f"SELECT {cols} FROM listings l JOIN nodes n ON n.name=l.node WHERE {' AND '.join(where)}"
            return conn.execute(sql + " ORDER BY l.node, l.name LIMIT ?", (*args, LIMIT)).fetchall()
        sql = (
            f"SELECT {cols} FROM listings_fts JOIN listings l ON l.id=listings_fts.rowid"
            f" JOIN nodes n ON n.name=l.node WHERE listings_fts MATCH ? AND {' AND '.join(where)}"
            f" ORDER BY {RANK}, l.node, l.name LIMIT ?"
        )
        return conn.execute(sql, (match, *args, LIMIT)).fetchall()

    return run


class RawGateway:
    """A bare CURVE DEALER speaking the gateway's frames: to split a search's time into the
    gateway's own handling (the ``ms`` of its reply header) and the rest."""

    def __init__(self, connection: dict[str, Any], key: KeyPair) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = connection["node_public_key"].encode()
        self.sock.curve_publickey = key.public.encode()
        self.sock.curve_secretkey = key.secret.encode()  # type: ignore[union-attr]
        self.sock.linger = 0
        self.sock.connect(connection["addresses"][0])
        self.ids = 0

    def call(self, body: schema.Body) -> tuple[dict[str, Any], Any, int]:
        self.ids += 1
        self.sock.send_multipart(codec.pack_message({"id": self.ids, "type": body.TYPE}, body.to_wire()))
        if not self.sock.poll(10_000):
            raise TimeoutError("the gateway did not answer")
        frames = self.sock.recv_multipart()
        header = msgpack.unpackb(frames[0])
        assert header["id"] == self.ids and header["status"] == "ok", header
        return header, codec.unpack_body(frames[1]), len(frames[1])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


WAYS = ("gateway", "GatewayDB", "same SQL", "bare FTS5")


def search_part(root: Path, searches: int, repeats: int) -> bool:
    print(f"\n(1) search: a gateway with {NODES * PER_NODE:,} datasets of {NODES} nodes")
    gw = sk.start_gateway(root / "grid", name="grid", auto_admit=True)
    net = raw = plain = db = None
    try:
        connection = gw.connection
        t = time.perf_counter()
        joined, published = register_nodes(connection)
        print(
            f"registered {NODES} nodes (signed joins over CURVE) and published {PER_NODE} listings each in "
            f"{time.perf_counter() - t:.1f} s: join {joined / NODES * 1e3:.1f} ms, "
            f"publish of {PER_NODE} {published / NODES * 1e3:.1f} ms per node"
        )
        sk.write_keypair(sk.generate_keypair("alice"), root / "keys")
        alice = read_keypair(root / "keys" / "alice.key")
        net = sk.connect_network(gw.connection_file, key=alice)
        db = GatewayDB(root / "grid" / "gateway.db")  # the same file, a second reader (WAL)
        plain = sqlite3.connect(root / "grid" / "gateway.db")
        raw = RawGateway(connection, alice)
        search = net.datasets.search
        ways: dict[str, Callable[[str, list[str]], Any]] = {
            "gateway": lambda q, tags: search(q, tags=tags),
            "GatewayDB": lambda q, tags: db.search(q, tags, None, None, LIMIT)[0],  # type: ignore[union-attr]
            "same SQL": same_sql(plain),
            "bare FTS5": bare_fts(plain),
        }
        hits = []
        for q, tags, _ in QUERIES:  # warm-up; the ways agree on what they find
            for way in ways.values():
                for _ in range(5):
                    way(q, tags)
            got = [(h.node, h.name) for h in search(q, tags=tags)]
            assert got == [(h["node"], h["name"]) for h in db.search(q, tags, None, None, LIMIT)[0]], q
            assert len(got) == len(ways["same SQL"](q, tags)), q
            label = " ".join([q] if q else []) + "".join(f" {t}" for t in tags)
            hits.append(f"{label.strip()}: {len(got)}/{len(ways['bare FTS5'](q, tags))}")
        print("hits per query (gateway, GatewayDB and same SQL / bare FTS5): " + "; ".join(hits))

        runs: list[dict[str, dict[str, list[float]]]] = []
        chunk = len(QUERIES) * 3
        for r in range(repeats):
            times: dict[str, dict[str, list[float]]] = {w: {k: [] for k in KINDS_OF_QUERY} for w in ways}
            done = 0
            while done < searches:
                order = WAYS[r % 4 :] + WAYS[: r % 4]
                r += 1
                for w in order:
                    way = ways[w]
                    for i in range(chunk):
                        q, tags, kind = QUERIES[i % len(QUERIES)]
                        t0 = time.perf_counter()
                        way(q, tags)
                        times[w][kind].append(time.perf_counter() - t0)
                done += chunk
            runs.append(times)

        def stat(w: str, kind: str | None, q: float) -> float:
            """The median over repeats of one repeat's percentile (ms)."""
            vals = []
            for times in runs:
                xs = [x for k, v in times[w].items() if kind in (None, k) for x in v]
                vals.append(pct(xs, q) * 1e3)
            return statistics.median(vals)

        print(
            f"\n{done:,} searches per way per repeat (cycling {len(QUERIES)} queries, limit {LIMIT}), "
            f"{repeats} repeats, the ways interleaved in chunks; median of the repeats' p50 / p99, ms"
        )
        head = "".join(f"{w + ' p50':>15}{'p99':>7}" for w in WAYS)
        print(f"{'':<11}{head}{'gw/DB':>8}{'gw/SQL':>8}{'gw/FTS':>8}")
        for kind in (*KINDS_OF_QUERY, None):
            p50 = {w: stat(w, kind, 0.5) for w in WAYS}
            cells = "".join(f"{p50[w]:>15.3f}{stat(w, kind, 0.99):>7.2f}" for w in WAYS)
            ratios = "".join(f"{p50['gateway'] / p50[w]:>7.2f}x" for w in WAYS[1:])
            print(f"{kind or 'all':<11}{cells}{ratios}")
        g50 = stat("gateway", None, 0.5)
        base = {w: stat(w, None, 0.5) for w in WAYS[1:]}
        ok_sql, ok_abs = g50 <= 3 * base["same SQL"], g50 <= 5.0
        print(
            f"target gateway p50 <= 3x the same SQL in-process (plain sqlite3): {g50 / base['same SQL']:5.2f}x  "
            f"{verdict(ok_sql)}"
        )
        print(
            f"       gateway p50 <= 3x GatewayDB.search in-process:            {g50 / base['GatewayDB']:5.2f}x  "
            f"{verdict(g50 <= 3 * base['GatewayDB'])}"
        )
        print(
            f"       gateway p50 <= 3x the bare FTS5 query:                    {g50 / base['bare FTS5']:5.2f}x  "
            f"{verdict(g50 <= 3 * base['bare FTS5'])}"
        )
        print(f"target gateway p50 <= 5 ms:                                       {g50:5.2f} ms {verdict(ok_abs)}")
        profile(net, raw, ways)
        return ok_sql and ok_abs
    finally:
        if raw is not None:
            raw.close()
        if net is not None:
            net.close()
        if plain is not None:
            plain.close()
        if db is not None:
            db.close()
        stop_node(gw)


PIECES = ("client", "bare RT", "handler", "SQL", "JSON", "pack", "unpack", "depth", "records", "rest")


def profile(net: Any, raw: RawGateway, ways: dict[str, Callable[[str, list[str]], Any]], n: int = 400) -> None:
    """Where a search's time goes, per query kind: each piece timed on its own, the pieces
    interleaved in blocks of 20 calls (p50s)."""
    print("\nwhere a search's time goes (p50 of each piece, ms)")
    for label, call in (("the client", net._call), ("a bare DEALER", raw.call)):
        xs = []
        for _ in range(n):
            t0 = time.perf_counter()
            call(schema.GatewayHello())
            xs.append(time.perf_counter() - t0)
        print(f"  gateway.hello (the protocol floor), {label:<14} {pct(xs, 0.5) * 1e3:.3f}")
    print("  " + f"{'kind':<11}" + "".join(f"{c:>8}" for c in PIECES) + f"{'KB':>6}{'fixed':>8}{'/SQL':>7}")
    for kind in KINDS_OF_QUERY:
        p, size = profile_kind(net, raw, ways, [(q, t) for q, t, k in QUERIES if k == kind], n)
        fixed = p["client"] - p["JSON"] - p["pack"] - p["depth"]
        cells = "".join(f"{p[c]:>8.3f}" for c in PIECES)
        print(f"  {kind:<11}{cells}{size / 1024:>6.1f}{fixed:>8.3f}{fixed / p['SQL']:>6.1f}x")
    print(
        "  client = net.datasets.search; bare RT = the same message from a bare CURVE DEALER (unpack included);\n"
        "  handler = the gateway's own time (its reply header's ms: body decode, peer lookup, SQL, JSON, dicts);\n"
        "  SQL = the same SQL in-process; JSON = GatewayDB.search - SQL (json.loads of tags and assets, the dicts);\n"
        "  pack = the gateway's msgpack of the reply; unpack = the client's codec.unpack_body, of which depth = its\n"
        "  _check_depth walk; records = DatasetHit + SearchResults; rest = bare RT - handler - pack - unpack (CURVE,\n"
        "  zmq, the gateway's loop); fixed = client - JSON - pack - depth: a search with listings stored ready to send\n"
        "  (no json.loads, no re-pack) and a client that skips the depth walk; /SQL = fixed / SQL"
    )


def profile_kind(
    net: Any, raw: RawGateway, ways: dict[str, Callable[[str, list[str]], Any]], qs: list[tuple[str, list[str]]], n: int
) -> tuple[dict[str, float], float]:
    """The p50 (ms) of each piece of a search over the queries ``qs``, and the reply's median size."""
    replies = {(q, tuple(t)): raw.call(schema.GatewaySearch(query=q, tags=t, limit=LIMIT))[1] for q, t in qs}
    packed = {k: msgpack.packb(r, use_bin_type=True) for k, r in replies.items()}
    x: dict[str, list[float]] = {c: [] for c in PIECES}

    def bare(q: str, tags: list[str]) -> None:
        header, _, _ = raw.call(schema.GatewaySearch(query=q, tags=tags, limit=LIMIT))
        x["handler"].append(header["ms"] / 1e3)

    def records(q: str, tags: list[str]) -> None:
        SearchResults(net, [DatasetHit(d) for d in replies[(q, tuple(tags))]["datasets"]], q, tags)

    pieces: dict[str, Callable[[str, list[str]], Any]] = {
        "client": lambda q, t: net.datasets.search(q, tags=t),
        "bare RT": bare,
        "SQL": ways["same SQL"],
        "JSON": ways["GatewayDB"],  # minus SQL below
        "pack": lambda q, t: msgpack.packb(replies[(q, tuple(t))], use_bin_type=True),
        "unpack": lambda q, t: codec.unpack_body(packed[(q, tuple(t))]),
        "depth": lambda q, t: codec._check_depth(replies[(q, tuple(t))], "body"),
        "records": records,
    }
    for block in range(n // 20):
        for name, piece in pieces.items():
            for i in range(20):
                q, tags = qs[(block * 20 + i) % len(qs)]
                t0 = time.perf_counter()
                piece(q, tags)
                x[name].append(time.perf_counter() - t0)
    p = {c: pct(v, 0.5) * 1e3 for c, v in x.items() if v}
    p["JSON"] -= p["SQL"]  # GatewayDB.search minus its SQL: json.loads of tags and assets, the dicts
    p["rest"] = p["bare RT"] - p["handler"] - p["pack"] - p["unpack"]  # CURVE, zmq, the gateway's loop
    return p, statistics.median(len(v) for v in packed.values())


# ---------------------------------------------------------------- (2) one cell over three nodes
class Relay:
    """A TCP relay that delays every chunk by ``delay`` s each way (a node further away than
    loopback), run on an asyncio loop in a thread of this process; bytes only, CURVE passes."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target[len("tcp://") :].rsplit(":", 1)
        self.target, self.delay = (host, int(port)), delay
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("the relay did not start")

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
            self.writers += [writer, up_w]
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass  # the relay closes, or one side went
        finally:
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk sent ``delay`` after it arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - self.loop.time()))
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = self.loop.create_task(send())
        try:
            while data := await reader.read(1 << 20):
                queue.put_nowait((self.loop.time() + self.delay, data))
            queue.put_nowait((0.0, b""))
            await sender
        finally:
            sender.cancel()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for w in self.writers:
                w.close()
            tasks = list(self.tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


STATS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    # statistic: (what bounds it, what it computes on the births pointer; the result stays private)
    "group mean": ("CPU", lambda b: b.groupby("delivery", observed=True)["weight"].mean().max()),  # the issue's
    "rank mean": ("CPU", lambda b: b["weight"].rank().mean()),  # ~0.1-0.2 s a node for 1e6 rows
    "derived sum": ("light", lambda b: (b["weight"] * b["height"] / b["weeks"]).sum()),  # ~3 ms: latency-bound
    # through the relay
}


def cell(work: list[tuple[Client, Any]], stat: Callable[[Any], Any]) -> tuple[float, float, list[Any]]:
    """One cell as the kernel runs it: ``stat`` recorded on each node's pointer, every plan sent
    when the cell ends, before waiting on any (``flush_all``). The pointers come from an earlier
    cell (``births = ds.datasets["births"]["births"]``). Returns the wall time, this process's
    CPU time (the client's own share) and the result pointers."""
    set_auto(True)
    try:
        t, cpu = time.perf_counter(), time.process_time()
        keep = []
        for client, births in work:
            current(client)
            keep.append(stat(births))
        flush_all()
        return time.perf_counter() - t, time.process_time() - cpu, keep
    finally:
        set_auto(False)


@contextmanager
def logins(nodes: list[Any], relays: list[Relay] | None) -> Iterator[list[tuple[Client, Any]]]:
    """The owner of each node (direct, or through its relay) with a pointer to its births."""
    clients: list[Client] = []
    try:
        for i, n in enumerate(nodes):
            if relays is None:
                clients.append(n.login())
            else:
                clients.append(Client(n.connection, read_keypair(n.owner_key), address=relays[i].address))
        yield [(c, c.datasets["births"]["births"]) for c in clients]
    finally:
        for c in clients:
            c.close()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes ``pids`` have used so far, every thread, in ns resolution (each
    thread's schedstat; /proc/PID/stat counts in 10 ms ticks, too coarse for a 5 ms cell)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
                pass
    return total / 1e9


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy so far (every process, not idle or iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def compare(
    work: list[tuple[Client, Any]], stat: Callable[[Any], Any], repeats: int, pids: list[int]
) -> dict[str, float]:
    """Median wall times (s), interleaved: each node alone (the slowest of their medians), the
    three in one cell, two of them in one cell (a pair that fits the cores); and, over the
    three-node cells, the CPU the nodes used and the CPU anything else on the machine used."""
    alone: list[list[float]] = [[] for _ in work]
    three, two, client = [], [], []
    nodes_cpu = others_cpu = 0.0
    for r in range(repeats):
        for i in range(len(work)):
            alone[i].append(cell([work[i]], stat)[0])
        n0, m0, b0 = cpu_seconds(pids), machine_busy(), time.process_time()
        wall, cpu, _ = cell(work, stat)
        n1, m1, b1 = cpu_seconds(pids), machine_busy(), time.process_time()
        nodes_cpu += n1 - n0
        others_cpu += (m1 - m0) - (n1 - n0) - (b1 - b0)
        three.append(wall)
        client.append(cpu)
        two.append(cell([work[r % 3], work[(r + 1) % 3]], stat)[0])
        gc.collect()
    medians = [statistics.median(a) for a in alone]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        # the CPU floor: the three cells' CPU (the nodes' and this process's) spread on every core
        "floor": max(max(medians), (nodes_cpu + sum(client)) / repeats / cores),
        "slowest": max(medians),
        "fastest": min(medians),
        "three": statistics.median(three),
        "two": statistics.median(two),
        "client": statistics.median(client),
        "nodes_cpu": nodes_cpu / repeats,
        "others": max(0.0, others_cpu) / sum(three),  # cores busy with other work during the cells
    }


def cell_part(root: Path, rows: int, repeats: int, delay: float, quiet: float = 0.0) -> bool:
    print(f"\n(2) one cell over three nodes, each with {rows:,} births (the same kind of data, months 2-4)")
    nodes: list[Any] = []
    relays: list[Relay] = []
    ok = True
    try:
        wants = []
        for i, month in enumerate((2, 3, 4)):
            node = sk.start_node(root / f"h{i}", name=f"h{i}")
            nodes.append(node)
            frame = sk.sample_data.birth_records(month=month, rows=rows)
            with node.login() as owner:
                owner.datasets.upload("births", assets={"births": frame}, description="births", tags=["#births"])
            wants.append({k: float(f(frame)) for k, f in LOCAL.items()})
            del frame
        gc.collect()
        relays = [Relay(next(a for a in n.connection["addresses"] if a.startswith("tcp://")), delay) for n in nodes]
        cols = ("alone max", "alone min", "3 in cell", "ratio", "/floor", "2 in cell", "ratio", "client", "nodes")
        print(f"{'statistic':<13}{'path':<20}" + "".join(f"{c:>10}" for c in cols) + f"{'others':>8}")
        print(
            f"{'':<33}{'ms':>10}{'ms':>10}{'ms':>10}{'':>20}{'ms':>10}{'':>10}{'CPU ms':>10}{'CPU ms':>10}{'cores':>8}"
        )
        for label, (bound, stat) in STATS.items():
            for path in ("loopback (ipc)", f"relay +{delay * 1e3:.0f} ms/way"):
                with logins(nodes, None if path.startswith("loopback") else relays) as work:
                    *_, got = cell(work, stat)  # warm-up; the owner may get the private result: it is right
                    for g, want in zip(got, wants):
                        assert abs(float(g.get()) - want[label]) <= 1e-9 * max(1.0, abs(want[label])), label
                    cell(work, stat)
                    if quiet:
                        wait_quiet(quiet, say=False)
                    m = compare(work, stat, repeats, [n.proc.pid for n in nodes])
                r3, r2 = m["three"] / m["slowest"], m["two"] / m["slowest"]
                row = [m["slowest"] * 1e3, m["fastest"] * 1e3, m["three"] * 1e3]
                text = "".join(f"{x:>10.1f}" for x in row) + f"{r3:>9.2f}x{m['three'] / m['floor']:>9.2f}x"
                text += f"{m['two'] * 1e3:>10.1f}{r2:>9.2f}x{m['client'] * 1e3:>10.1f}{m['nodes_cpu'] * 1e3:>10.0f}"
                print(f"{label:<13}{path:<20}{text}{m['others']:>8.2f}  {verdict(r3 <= 1.3)}")
                if bound == "CPU" and path.startswith("loopback"):
                    ok &= r3 <= 1.3  # the headline: the statistic, nodes on this host
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        print(
            f"target: 3 nodes in one cell <= 1.3x the slowest node alone (the headline: {next(iter(STATS))} on"
            " loopback).\n"
            f"{cores} cores here: three CPU-bound plans cannot fully overlap (the floor is {max(1.0, 3 / cores):.1f}x one"
            f" node's compute; {max(1.0, 2 / cores):.1f}x for two). /floor = the cell against max(slowest alone, the\n"
            "CPU the 3-node cell used (nodes + client) / cores): the best these cores allow. client = this process's"
            " CPU per\n3-node cell; nodes = the three node processes' CPU per 3-node cell; others = cores busy with"
            " anything else\n(other processes) meanwhile: a busy machine slows every row."
        )
        return ok
    finally:
        for relay in relays:
            relay.close()
        for node in nodes:
            stop_node(node)


LOCAL: dict[str, Callable[[Any], Any]] = {  # the same statistics in pandas, to check the node's
    "group mean": lambda f: f.groupby("delivery", observed=True)["weight"].mean().max(),
    "rank mean": lambda f: f["weight"].rank().mean(),
    "derived sum": lambda f: (f["weight"] * f["height"] / f["weeks"]).sum(),
}


def wait_quiet(limit: float, busy: float = 0.3, say: bool = True) -> None:
    """Wait (up to ``limit`` s) for a few seconds in which other processes keep under ``busy``
    cores busy; print what the machine was doing (``say``)."""
    deadline = time.monotonic() + limit
    span = 3.0 if limit > 0 else 1.0
    while True:
        m0 = machine_busy()
        time.sleep(span)
        load = (machine_busy() - m0) / span
        if load < busy or time.monotonic() >= deadline:
            if say:
                avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"(other processes kept {load:.2f} cores busy just before this part; load avg {avg})")
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer searches, rows and repeats")
    parser.add_argument("--searches", type=int, default=None, help="searches per way per repeat (default 1,080)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of each part (default 5 for search, 7 for the cell)"
    )
    parser.add_argument("--rows", type=int, default=None, help="births per node in (2) (default 1,000,000)")
    parser.add_argument("--delay", type=float, default=0.025, help="the relay's delay each way in (2), s")
    parser.add_argument("--part", choices=("search", "cell", "both"), default="both")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S s for a quiet machine before each part (and each row of (2))",
    )
    args = parser.parse_args(argv)
    searches = args.searches or (216 if args.quick else 1080)
    repeats = args.repeats or (2 if args.quick else 5)
    cell_repeats = args.repeats or (3 if args.quick else 7)
    rows = args.rows or (200_000 if args.quick else 1_000_000)
    print_machine(f"sqlite {sqlite3.sqlite_version}, pyzmq {zmq.__version__}, numpy {np.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.part in ("search", "both"):
            wait_quiet(args.wait_quiet)
            ok &= search_part(root, searches, repeats)
        if args.part in ("cell", "both"):
            wait_quiet(args.wait_quiet)
            ok &= cell_part(root, rows, cell_repeats, args.delay, args.wait_quiet)
    print("\nsummary:", "all targets met" if ok else "some targets missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
