"""The wire under attack: every message a client can craft gets an error or ok reply, never an
internal error, and the node never dies.

A fuzzer replays real messages (captured from a scripted owner and scientist session) with
mutations: bit flips, truncation, msgpack fields swapped for values of other types, broken value
trees (shapes, dtypes, rows), crafted Arrow streams (string offsets past their data, compressed
bombs), frames dropped or added, headers naming another message type. It is bounded: a fixed
seed, a few hundred messages sent one at a time, every frame at most 1 MB. Targeted tests cover
the Arrow string-offset crash, a decompression bomb, an array whose shape does not match its
frame, and a wrong-typed value in every field of every handler's body.
"""

from __future__ import annotations

import copy
import math
import random
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import zmq

import syft_kernel as sk
from syft_kernel.core import codec, fl_graph
from syft_kernel.core import errors as sk_errors
from syft_kernel.core.keys import generate_keypair, read_keypair, write_keypair
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.sample_data import birth_records

SEED = 20260201
MAX_FRAME = 1024 * 1024
REPLY_TIMEOUT = 30.0
BOUNDS = (0.5, 6.0)


# ---------------------------------------------------------------- a raw connection


class Raw:
    """A DEALER with a registered user's CURVE keys: sends frames as they are, returns the reply."""

    def __init__(self, connection: dict[str, Any], key: Path) -> None:
        pair = read_keypair(key)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = connection["node_public_key"].encode()
        self.sock.curve_publickey = pair.public.encode()
        self.sock.curve_secretkey = pair.secret.encode()  # type: ignore[union-attr]
        self.sock.linger = 0
        self.sock.connect(next(a for a in connection["addresses"] if a.startswith("tcp://")))

    def ask(self, frames: list[bytes], timeout: float = REPLY_TIMEOUT) -> tuple[dict[str, Any], Any]:
        """Send; return the reply's (header, body), skipping pushed events."""
        self.sock.send_multipart(frames)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and self.sock.poll(left * 1000), f"no reply within {timeout}s"
            reply = self.sock.recv_multipart()
            header = msgpack.unpackb(reply[0])
            if header.get("type") != "event":
                return header, msgpack.unpackb(reply[1])

    def call(
        self, msg_type: str, body: Any, buffers: list[bytes] | tuple[bytes, ...] = ()
    ) -> tuple[dict[str, Any], Any]:
        return self.ask(codec.pack_message({"id": 1, "type": msg_type}, body, list(buffers)))

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


# ---------------------------------------------------------------- one node for the module


@dataclass
class Site:
    node: NodeProcess
    alice_key: Path
    owner: Raw
    alice: Raw
    corpus: list[tuple[str, list[bytes]]] = field(default_factory=list)  # (who, frames)
    ids: dict[str, Any] = field(default_factory=dict)
    log_checked: int = 0

    def raw(self, who: str) -> Raw:
        return self.owner if who == "owner" else self.alice

    def new_log(self) -> str:
        """The node's log written since the last look."""
        text = self.node.log()
        out, self.log_checked = text[self.log_checked :], len(text)
        return out


def _record(client: sk.Client, who: str, corpus: list[tuple[str, list[bytes]]]) -> None:
    sock = client._sock
    send = sock.send_multipart

    def recording(frames: Any, *args: Any, **kwargs: Any) -> Any:
        corpus.append((who, [bytes(memoryview(f)) for f in frames]))
        return send(frames, *args, **kwargs)

    sock.send_multipart = recording  # type: ignore[method-assign]


def mean_weight(births):  # type: ignore[no-untyped-def]
    return births["weight"].mean()


def scaled_weight(births):  # type: ignore[no-untyped-def]
    return births["weight"] * np.float64(2.5) + np.ones(200)


def _session(node: NodeProcess, alice_key: Path, corpus: list[tuple[str, list[bytes]]], ids: dict[str, Any]) -> None:
    """A normal owner and scientist session; every message they send goes to ``corpus``."""
    births = birth_records(month=2, rows=200)
    with node.login() as owner, sk.login(node.connection_file, key=alice_key) as ds:
        owner.datasets.upload(
            "births",
            assets={"births": births, "matrix": np.arange(12.0).reshape(3, 4)},
            description="fuzz",
            tags=["#fuzz"],
            bounds={"weight": BOUNDS},
        )
        owner.budget.set("alice", "births", epsilon=1e5, delta=1e-3)
        _record(owner, "owner", corpus)
        _record(ds, "alice", corpus)
        extra = pd.DataFrame(
            {
                "s": ["a", "bb", None],
                "c": pd.Categorical(["x", "y", "x"]),
                "n": pd.array([1, None, 3], dtype="Int64"),
                "f": [0.5, 1.5, 2.5],
            }
        )
        owner.datasets.upload(
            "extra", assets={"t": extra, "v": np.ones(4, dtype=np.float32)}, mock={"t": extra.iloc[:1]}, tags=["#x"]
        )
        owner.datasets.list()
        owner.users.add("bob", public_key=generate_keypair("bob").public)
        owner.users.list()
        owner.stats()
        owner.audit(limit=5)
        owner.budget.of("alice", "births")
        ds.datasets.search("fuzz", tags=["#fuzz"])
        b = ds.datasets["births"]["births"]
        b.mock.head()
        w = b["weight"]
        doubled = w * 2 + np.arange(200.0)
        total = doubled.sum()
        ds.call("objects.describe", {"id": total.id})
        first = b[b["sex"] == "F"].head(3)
        matrix = ds.datasets["births"]["matrix"]
        (matrix @ np.ones((4, 2))).sum()
        b["sex"].isin(pd.Series(["F", "M"]))  # a literal frame: an Arrow stream in a run
        (b["sex"] == np.array(["F"] * 200, dtype=object)).sum()  # an object array: Arrow too
        w.dp.mean(epsilon=0.5, bounds=BOUNDS)
        b.dp.count(epsilon=0.5)
        b["sex"].dp.histogram(categories=["F", "M"], epsilon=0.5)
        b.dp.groupby("sex", categories=["F", "M"]).mean("weight", bounds=BOUNDS, epsilon=0.5)
        req = total.request(reason="fuzz total")
        ids["request"] = req.id
        ids["object"] = total.id
        ids["first"] = first.id
        scaled = sk.plan(scaled_weight)
        scaled(b)  # a run with a plan hash and inputs
        scaled.request(b, reason="fuzz plan")  # plans.request
        job = ds.code.submit(mean_weight, inputs={"births": b}, reason="fuzz code")
        ids["code_request"] = job.id
        ds.budget.history  # noqa: B018  (budgets.get)
        ds.budget.request("births", 1.0, reason="fuzz budget")
        ds.requests.list()
        owner.requests.list()
        owner.requests[req.id].deny("no")
        try:
            total.get()
        except sk.PermissionDenied:
            pass
        del doubled  # frees: its id travels in the next call's header ("free")
        ds.call("hello")
        ds.call("del", {"ids": [total.id]})  # and the del message of its own (many frees, or a close)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("fuzz")
    node = start_node(root / "hospital", name="hospital")
    try:
        alice_key, alice_pub = write_keypair(generate_keypair("alice"), root / "users")
        with node.login() as owner:
            owner.users.add("alice", role="data_scientist", public_key=alice_pub)
        corpus: list[tuple[str, list[bytes]]] = []
        ids: dict[str, Any] = {}
        _session(node, alice_key, corpus, ids)
        s = Site(node, alice_key, Raw(node.connection, node.owner_key), Raw(node.connection, alice_key), corpus, ids)
        try:
            yield s
        finally:
            s.owner.close()
            s.alice.close()
    finally:
        node.stop()


OUR_ERRORS = {name for name, cls in vars(sk_errors).items() if isinstance(cls, type) and issubclass(cls, sk.SyftError)}


def check_reply(site: Site, header: dict[str, Any], body: Any, what: str) -> None:
    """One ok or error reply; an error is ours, never an internal error."""
    assert header.get("type") == "reply" and header.get("status") in ("ok", "error"), (what, header)
    if header["status"] == "error":
        assert isinstance(body, dict) and isinstance(body.get("message"), str), (what, body)
        assert not body["message"].startswith("internal error"), (what, body)
        assert body.get("error") in OUR_ERRORS, (what, body)


def check_log(site: Site) -> None:
    log = site.new_log()
    bad = [line for line in log.splitlines() if "internal error" in line or "could not encode the reply" in line]
    assert not bad, "\n".join(bad[:20]) + "\n" + log[-4000:]
    assert site.node.alive(), site.node.log()[-4000:]


def still_serves(site: Site) -> None:
    with site.node.login() as owner, sk.login(site.node.connection_file, key=site.alice_key) as ds:
        assert owner.call("hello")[0]["node"] == "hospital"
        w = ds.datasets["births"]["births"]["weight"]
        assert (w + 1).shape == (200,)
        assert isinstance(w.dp.mean(epsilon=0.5, bounds=BOUNDS), float)


# ---------------------------------------------------------------- crafted values


def arrow_stream(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bad_offsets_stream(column: str = "c0") -> bytes:
    """A valid stream of one string column whose last offset is patched to point 1 GiB past its data
    (reading it unchecked makes pandas read far outside the buffer: a segfault)."""
    raw = bytearray(arrow_stream(pa.table({column: pa.array(["AAAAAAAA", "BBBBBBBB"])})))
    offsets = np.array([0, 8, 16], dtype="<i4").tobytes()
    at = raw.find(offsets)
    assert at > 0
    raw[at : at + 12] = np.array([0, 8, 1 << 30], dtype="<i4").tobytes()
    return bytes(raw)


BOMB_ROWS = 8_000_000  # 64 MB of zeros, zstd-compressed to about 2 KB


def bomb_stream(claim: int | None = None) -> bytes:
    """A zstd-compressed stream of 64 MB of zeros (~2 KB); ``claim`` rewrites the buffer's declared
    uncompressed length (Arrow allocates what it declares)."""
    raw = bytearray(arrow_stream(pa.table({"c0": pa.array(np.zeros(BOMB_ROWS))}), compression="zstd"))
    if claim is not None:
        at = raw.find(struct.pack("<q", BOMB_ROWS * 8))
        assert at > 0
        raw[at : at + 8] = struct.pack("<q", claim)
    return bytes(raw)


def frame_tree(rows: int, buffer: int = 0) -> dict[str, Any]:
    """A one-column frame value whose column comes from an Arrow stream in ``buffer``."""
    return {
        "~": "df",
        "rows": rows,
        "columns": ["x"],
        "column_names": [None],
        "multi_columns": False,
        "cols": [{"arrow": "c0"}],
        "index": {"range": [0, rows, 1], "names": [None]},
        "arrow": buffer,
    }


def literal_op(value_tree: Any) -> dict[str, Any]:
    """A plan with one op whose first argument is a literal value."""
    return {"ops": [{"kind": "op", "name": "add", "args": [value_tree, 1], "kwargs": []}], "keep": [0]}


def upload_body(name: str, value_tree: Any) -> dict[str, Any]:
    return {"name": name, "assets": [{"name": "a", "value": value_tree, "mock": None}], "description": "", "tags": []}


# ---------------------------------------------------------------- targeted tests


def test_arrow_string_offsets_past_the_data_get_a_clear_error(site: Site) -> None:
    for who, msg_type, body in [
        ("alice", "run", literal_op(frame_tree(2))),
        ("owner", "datasets.upload", upload_body("offsets", frame_tree(2))),
        ("alice", "run", literal_op({"~": "arrow_array", "a": 0})),
    ]:
        stream = bad_offsets_stream("v" if "arrow_array" in str(body) else "c0")
        header, reply = site.raw(who).call(msg_type, body, [stream])
        assert header["status"] == "error", reply
        assert reply["error"] == "ProtocolError" and "Arrow stream is not valid" in reply["message"], reply
        assert "offsets" in reply["message"]
    check_log(site)
    still_serves(site)


def test_a_decompression_bomb_is_refused_fast_and_others_are_served(site: Site) -> None:
    for stream in (bomb_stream(), bomb_stream(claim=2**36)):
        assert len(stream) < 4096
        answered: list[float] = []

        def others(answered: list[float] = answered) -> None:  # another user asks meanwhile
            with site.node.login() as owner:
                t = time.perf_counter()
                owner.call("hello")
                answered.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        other = threading.Thread(target=others)
        other.start()
        header, reply = site.alice.call("run", literal_op(frame_tree(BOMB_ROWS)), [stream])
        elapsed = time.perf_counter() - t0
        other.join(30)
        assert header["status"] == "error" and reply["error"] == "ProtocolError", reply
        assert "compressed Arrow IPC is not accepted" in reply["message"]
        assert elapsed < 5.0 and answered and answered[0] < 5.0
        header, reply = site.owner.call("datasets.upload", upload_body("bomb", frame_tree(BOMB_ROWS)), [stream])
        assert header["status"] == "error" and "compressed" in reply["message"], reply
    check_log(site)


def test_arrow_streams_that_would_expand_are_refused(site: Site) -> None:
    # 2^31 rows of nulls in a 200-byte stream: no data, but pandas would make 2^31 objects
    nulls = arrow_stream(pa.table({"c0": pa.nulls(2**31 - 1)}))
    header, reply = site.alice.call("run", literal_op(frame_tree(2**31 - 1)), [nulls])
    assert header["status"] == "error" and "would decode to about" in reply["message"], reply
    # a dictionary of one 1 MB string behind many indices, sent as an object array (to_pylist would copy it)
    d = pa.DictionaryArray.from_arrays(pa.array(np.zeros(1000, dtype=np.int8)), pa.array(["x" * 500_000]))
    header, reply = site.alice.call("run", literal_op({"~": "arrow_array", "a": 0}), [arrow_stream(pa.table({"v": d}))])
    assert header["status"] == "error" and "dictionary-encoded" in reply["message"], reply
    for array in (pa.array(["a", "b"], type=pa.string_view()), pa.RunEndEncodedArray.from_arrays([2], [1])):
        header, reply = site.alice.call("run", literal_op(frame_tree(2)), [arrow_stream(pa.table({"c0": array}))])
        assert header["status"] == "error" and "are not accepted" in reply["message"], reply
    check_log(site)


@pytest.mark.parametrize(
    "tree, buffer, match",
    [
        ({"~": "nd", "dtype": "<f8", "shape": [4], "b": 0}, b"\x00" * 24, "does not match shape"),
        ({"~": "nd", "dtype": "<f8", "shape": [2, -3], "b": 0}, b"\x00" * 48, "non-negative integers"),
        ({"~": "nd", "dtype": "<f8", "shape": ["3"], "b": 0}, b"\x00" * 24, "non-negative integers"),
        ({"~": "nd", "dtype": "<f8", "shape": [0, 2**62], "b": 0}, b"", "non-negative integers"),
        ({"~": "nd", "dtype": "O", "shape": [3], "b": 0}, b"\x00" * 24, "not a plain numeric dtype"),
        ({"~": "nd", "dtype": "V8", "shape": [3], "b": 0}, b"\x00" * 24, "not a plain numeric dtype"),
        ({"~": "nd", "dtype": "f8,i4", "shape": [2], "b": 0}, b"\x00" * 24, "not a plain numeric dtype"),
        ({"~": "nd", "dtype": "(3,)f8", "shape": [1], "b": 0}, b"\x00" * 24, "not a plain numeric dtype"),
        ({"~": "nd", "dtype": ["f8"], "shape": [3], "b": 0}, b"\x00" * 24, "unknown dtype"),
        ({"~": "nd", "dtype": "|b1", "shape": [3], "b": 0}, b"\x00\x01\x07", "other than 0 and 1"),
        ({"~": "tensor", "dtype": "float32", "shape": [7], "b": 0}, b"\x00" * 24, "does not match shape"),
        (
            {
                "~": "df",
                "rows": 4,
                "columns": ["a"],
                "cols": [{"dtype": "<f8", "b": 0}],
                "index": {"range": [0, 4, 1], "names": [None]},
            },
            b"\x00" * 24,
            "row count",
        ),
        (
            {"~": "df", "rows": "3", "columns": [], "cols": [], "index": {"range": [0, 3, 1], "names": [None]}},
            b"",
            "rows is an integer",
        ),
    ],
)
def test_value_trees_that_do_not_match_their_frames_are_refused(
    site: Site, tree: Any, buffer: bytes, match: str
) -> None:
    header, reply = site.alice.call("run", literal_op(tree), [buffer])
    assert header["status"] == "error" and reply["error"] == "ProtocolError", reply
    assert match in reply["message"], reply
    check_log(site)


def test_each_buffer_is_used_once_and_frames_are_capped(site: Site) -> None:
    nd = {"~": "nd", "dtype": "<f8", "shape": [1], "b": 0}
    header, reply = site.alice.call("run", literal_op([nd, nd]), [b"\x00" * 8])
    assert header["status"] == "error" and "used twice" in reply["message"], reply
    frames = codec.pack_message({"id": 1, "type": "hello"}, {}) + [b""] * 70_000
    header, reply = site.alice.ask(frames)
    assert header["status"] == "error" and "frames" in reply["message"], reply
    check_log(site)


def test_bodies_are_capped_in_depth_containers_and_kinds(site: Site) -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    for body, match in [
        ({"ops": deep}, "nested deeper"),
        (b"\xdd" + (1_100_000).to_bytes(4, "big") + b"\x80" * 1_100_000, "lists and maps"),
        (msgpack.packb({"id": msgpack.ExtType(7, b"x")}), "extension type"),
    ]:
        raw = body if isinstance(body, bytes) else msgpack.packb(body)
        header, reply = site.alice.ask([msgpack.packb({"v": 1, "id": 1, "type": "get"}), raw])
        assert header["status"] == "error" and match in reply["message"], reply
    check_log(site)


# ---------------------------------------------------------------- every field of every handler

WRONG: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    math.nan,
    math.inf,
    "",
    "x" * 300,
    b"\x00\xff",
    [],
    [1, "a"],
    {},
    {"a": [1]},
    {"~": "nd"},
]


def _paths(body: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Paths to every field of a body, two levels deep (lists: their first item)."""
    if depth >= 3:
        return
    if isinstance(body, dict):
        for k, v in body.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k), depth + 1)
    elif isinstance(body, list) and body:
        yield (*prefix, 0)
        yield from _paths(body[0], (*prefix, 0), depth + 1)


def _replace(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _bodies(site: Site, gateway: dict[str, Any] | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """A valid body (and who sends it) for each message type (``gateway``: a gateway's
    connection, for the network's)."""
    ids = site.ids
    other = generate_keypair("carol")
    params = {
        "epsilon": 0.5,
        "bounds": list(BOUNDS),
        "categories": ["F", "M"],
        "by": "sex",
        "column": "weight",
        "q": 0.5,
        "bins": [0.5, 3.0, 6.0],
        "delta": None,
    }
    return {
        "hello": ("alice", {}),
        "node.stats": ("alice", {}),
        "users.add": (
            "owner",
            {"name": "carol", "role": "data_scientist", "public_key": other.public, "signing_key": other.sign_public},
        ),
        "users.remove": ("owner", {"name": "nobody"}),
        "users.list": ("owner", {}),
        "datasets.upload": (
            "owner",
            {
                "name": "typed",
                "assets": [{"name": "a", "value": 1.0, "mock": None}],
                "description": "d",
                "tags": ["#t"],
                "subject_column": None,
                "owners": ["owner"],
                "policy": {"kind": "single"},
                "bounds": {"a": [0, 1]},
                "subject_limit": 0.0,
                "max_rows_per_subject": 1,
            },
        ),
        "datasets.delete": ("owner", {"name": "nothing-here"}),
        "datasets.list": ("alice", {"query": "fuzz", "tags": ["#fuzz"], "offset": 0, "limit": 5}),
        "datasets.get": ("alice", {"name": "births"}),
        "datasets.mock": ("alice", {"dataset": "births", "asset": "births"}),
        "asset.pointer": ("alice", {"dataset": "births", "asset": "births"}),
        "run": (
            "alice",
            {
                "ops": [
                    {"kind": "op", "name": "add", "args": [{"~": "ref", "id": "asset:births/matrix"}, 1], "kwargs": []}
                ],
                "keep": [0],
                "inputs": [],
            },
        ),
        "get": ("alice", {"id": ids["first"]}),
        "objects.describe": ("alice", {"id": ids["object"]}),
        "del": ("alice", {"ids": ["o-unknown"]}),
        "budgets.set": ("owner", {"user": "alice", "dataset": "births", "epsilon": 1e5, "delta": 1e-3}),
        "budgets.get": ("owner", {"user": "alice", "dataset": "births", "history": False}),
        "audit.list": ("owner", {"limit": 3, "user": "alice", "action": "get", "target": "x", "since": 0.0}),
        "requests.create": ("alice", {"id": ids["object"], "reason": "again"}),
        "code.submit": (
            "alice",
            {
                "source": "def f(births):\n    return births['weight'].mean()\n",
                "fn_name": "f",
                "inputs": {"births": "asset:births/births"},
                "reason": "typed",
            },
        ),
        "requests.list": ("owner", {"status": "pending", "requester": "alice", "kind": "object"}),
        "requests.get": ("alice", {"id": ids["request"]}),
        "requests.decide": (
            "owner",
            {
                "id": ids["code_request"],
                "decision": "deny",
                "comment": "",
                "nonce": "0" * 32,
                "signature": "00" * 64,
                "limits": {"timeout": 5},
            },
        ),
        "plans.request": (
            "alice",
            {
                "ops": [{"kind": "op", "name": "add", "args": [{"~": "in", "i": 0}, 1], "kwargs": []}],
                "outputs": [0],
                "inputs": ["asset:births/matrix"],
                "reason": "typed",
            },
        ),
        "budgets.request": ("alice", {"dataset": "births", "epsilon": 1.0, "reason": "typed"}),
        "dp.query": ("alice", {"target": "asset:births/births", "query": "group_mean", "params": params}),
        "fl.submit": ("alice", {**_fl_body(), "data": "asset:births/births", "reason": "typed", "strategy": "FedAvg"}),
        "fl.fit": ("alice", {"request": "r-unknown", "round": 1}),
        "fl.evaluate": ("alice", {"request": "r-unknown", "round": 0}),
        "fl.stop": ("alice", {"request": "r-unknown", "reason": "typed"}),
        "fl.status": ("alice", {"request": "r-unknown"}),
        "network.join": ("owner", {"connection": gateway or {}, "public_rows": False}),
        "network.status": ("owner", {}),
        "network.leave": ("owner", {}),
    }


def _fl_body() -> dict[str, Any]:
    """A sound training plan on the births table: weight and height predict the weeks."""
    import torch

    graph, _ = fl_graph.trace(torch.nn.Linear(2, 1))
    plan = {
        "loss": "mse",
        "optimizer": {"name": "sgd", "lr": 0.01},
        "rounds": 1,
        "local_epochs": 1,
        "batch_size": 8,
        "proximal_mu": 0.0,
        "seed": 0,
        "target": "weeks",
        "features": ["weight", "height"],
    }
    return {"graph": graph, "plan": plan}


def test_every_field_of_every_handler_refuses_wrong_types_with_our_error(site: Site, tmp_path: Path) -> None:
    from syft_kernel.node.dispatch import HANDLERS
    from syft_kernel.node.server import NodeServer  # noqa: F401  (registers every handler module)

    gateway = sk.start_gateway(tmp_path / "grid", name="grid", auto_admit=True)  # network.join's, for real
    try:
        _every_field(site, _bodies(site, gateway.connection), HANDLERS)
    finally:
        gateway.stop()


def _every_field(site: Site, bodies: dict[str, tuple[str, dict[str, Any]]], handlers: Any) -> None:
    missing = sorted(set(handlers) - set(bodies))
    assert not missing, f"add a valid body for {missing}"
    sent = 0
    started = time.monotonic()
    for msg_type in sorted(handlers):
        who, base = bodies[msg_type]
        raw = site.raw(who)
        variants: list[Any] = [None, [], "body", 7, [base]]
        variants += [{k: v for k, v in base.items() if k != key} for key in base]
        extra = [_replace(base, path, value) for path in _paths(base) for value in WRONG]
        dp_extra = []
        if msg_type == "dp.query":  # each query kind with each parameter wrong
            from syft_kernel.node.dp import QUERIES

            dp_extra = [
                _replace({**base, "query": q}, ("params", key), value)
                for q in QUERIES
                for key in base["params"]
                for value in WRONG[::2]
            ]
        for body in variants + extra + dp_extra:
            header, reply = raw.call(msg_type, body)
            check_reply(site, header, reply, f"{msg_type} {body!r:.300}")
            sent += 1
    assert sent > 1500 and time.monotonic() - started < 120
    check_log(site)
    still_serves(site)


# ---------------------------------------------------------------- the fuzzer


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    raw = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(raw))
        raw[i] ^= 1 << rng.randrange(8)
    return bytes(raw)


def _containers(tree: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _containers(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree[:50]):
            yield from _containers(v, (*path, i))


def _weird(rng: random.Random) -> Any:
    return rng.choice(
        WRONG
        + [
            2**64 - 1,
            -5,
            10**6,
            "nd",
            "df",
            "<f8",
            "O",
            "V8",
            "f8,f8",
            "M8",
            "|b1",
            {"~": "tuple", "v": 3},
            {"~": "int", "v": "1" * 5000},
            {"~": "df"},
            {"~": "ref", "id": 5},
            {"~": "res", "i": -1},
            [[[[[]]]]],
        ]
    )


def _swap_field(rng: random.Random, frames: list[bytes], index: int) -> list[bytes]:
    if index >= len(frames):
        return frames
    try:
        tree = msgpack.unpackb(frames[index])
    except Exception:
        return frames
    spots = [p for p, _ in _containers(tree) if p]
    if not spots:
        return frames
    path = rng.choice(spots)
    tree = _replace(tree, path, _weird(rng))
    return [*frames[:index], msgpack.packb(tree), *frames[index + 1 :]]


def _break_tree(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """Wrong shapes, dtypes, rows and buffer numbers in the body's value trees."""
    try:
        body = msgpack.unpackb(frames[1]) if len(frames) > 1 else None
    except Exception:
        return frames
    nodes = [(p, n) for p, n in _containers(body) if isinstance(n, dict) and n.get("~") in ("nd", "tensor", "df")]
    if not nodes:
        return _swap_field(rng, frames, 1)
    path, node = rng.choice(nodes)
    node = dict(node)
    if node["~"] == "df":
        key = rng.choice(["rows", "cols", "index", "arrow", "columns"])
        rows = node.get("rows") if type(node.get("rows")) is int else 0
        node[key] = rng.choice(
            [
                rows + 1,
                -1,
                2**40,
                [],
                {"range": [0, 2**62, 1], "names": []},
                [{"dtype": "O", "b": 0}],
                [{"arrow": "zz"}],
                99,
            ]
        )
    else:
        key = rng.choice(["shape", "dtype", "b"])
        node[key] = {
            "shape": rng.choice([[-1], [2**40, 2**40], [0, 2**62], ["2"], [1.5], list(range(40))]),
            "dtype": rng.choice(["O", "V16", "<U4", "f8,f8", "(2,)f8", "M8", "bogus", "float128", "bool"]),
            "b": rng.choice([-1, 99, "0", None]),
        }[key]
    body = _replace(body, path, node) if path else node
    return [frames[0], msgpack.packb(body), *frames[2:]]


def _arrow_attack(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    arrow = [i for i, f in enumerate(frames) if i >= 2 and f[:4] == b"\xff\xff\xff\xff"]
    if not arrow:
        return _break_tree(rng, frames)
    i = rng.choice(arrow)
    choice = rng.randrange(4)
    if choice == 0:
        new = bad_offsets_stream()
    elif choice == 1:
        new = bomb_stream(claim=rng.choice([None, 2**40]))
    elif choice == 2:
        new = _flip(rng, frames[i])
    else:
        new = frames[i][: rng.randrange(len(frames[i]))]
    return [*frames[:i], new, *frames[i + 1 :]]


def _mutate(rng: random.Random, frames: list[bytes], corpus: list[tuple[str, list[bytes]]]) -> list[bytes]:
    kind = rng.randrange(9)
    if kind == 0:  # bit flips anywhere
        i = rng.randrange(len(frames))
        frames = [*frames[:i], _flip(rng, frames[i]), *frames[i + 1 :]]
    elif kind == 1:  # truncation
        i = rng.randrange(len(frames))
        frames = [*frames[:i], frames[i][: rng.randrange(len(frames[i]) + 1)], *frames[i + 1 :]]
    elif kind in (2, 3):  # a body field of another type
        frames = _swap_field(rng, frames, 1)
    elif kind == 4:  # a header field of another type
        frames = _swap_field(rng, frames, 0)
    elif kind == 5:
        frames = _break_tree(rng, frames)
    elif kind == 6:
        frames = _arrow_attack(rng, frames)
    elif kind == 7:  # frames dropped, duplicated or added
        op = rng.randrange(3)
        if op == 0 and len(frames) > 1:
            del frames[rng.randrange(len(frames))]
        elif op == 1:
            frames = frames + [rng.choice(frames)]
        else:
            frames = frames + [rng.randbytes(rng.randrange(64))]
    else:  # another message type's body under this header
        other = rng.choice(corpus)[1]
        try:
            header = msgpack.unpackb(frames[0])
            header["type"] = msgpack.unpackb(other[0]).get("type", "hello")
            frames = [msgpack.packb(header), *frames[1:]]
        except Exception:  # a header mangled by an earlier mutation
            pass
    return [f[:MAX_FRAME] for f in frames]


def _fresh_name(frames: list[bytes], n: int) -> list[bytes]:
    """Uploads and new users under a new name, so mutations reach what follows the name check."""
    msg_type = msgpack.unpackb(frames[0]).get("type")
    if msg_type not in ("datasets.upload", "users.add"):
        return frames
    body = msgpack.unpackb(frames[1])
    body["name"] = f"fuzzed{n}"
    return [frames[0], msgpack.packb(body), *frames[2:]]


def test_the_fuzzer_mutated_messages_get_replies_and_the_node_survives(site: Site) -> None:
    rng = random.Random(SEED)
    corpus = []
    for who, frames in site.corpus:
        header = msgpack.unpackb(frames[0])
        header.pop("noreply", None)  # every fuzzed message must be answered
        if header.get("type") in ("users.remove", "datasets.delete"):
            continue  # they would take the session's own user or data away (they are in the handler test)
        corpus.append((who, [msgpack.packb(header), *frames[1:]]))
    types = {msgpack.unpackb(f[0])["type"] for _, f in corpus}
    assert {
        "run",
        "datasets.upload",
        "dp.query",
        "code.submit",
        "requests.create",
        "requests.decide",
        "get",
        "asset.pointer",
        "del",
        "plans.request",
        "budgets.request",
        "users.add",
    } <= types, types
    assert any(f[:4] == b"\xff\xff\xff\xff" for _, fr in corpus for f in fr[2:])  # an Arrow stream among them
    started = time.monotonic()
    kinds: dict[str, int] = {}
    for n in range(600):
        who, frames = rng.choice(corpus)
        frames = _fresh_name(frames, n)
        mutated = _mutate(rng, list(frames), corpus)
        try:
            if msgpack.unpackb(mutated[0]).get("noreply"):
                continue
        except Exception:
            pass
        header, reply = site.raw(who).ask(mutated)
        check_reply(site, header, reply, f"message {n}: {[f[:200] for f in mutated]!r:.1500}")
        kinds[header["status"]] = kinds.get(header["status"], 0) + 1
    assert kinds.get("error", 0) > 100 and time.monotonic() - started < 180, kinds
    check_log(site)
    still_serves(site)
