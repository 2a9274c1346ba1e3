"""Attacks on the trust boundary (issue 10), each tried the way a registered data scientist who
read our code would: ops that write, approvals that cover less than they run, a node that is
stalled or exhausted, files other users can read, a denied request that says nothing. Each one is
refused or harmless, and the node keeps serving afterwards. (The sandbox for code requests is
attacked in test_sandbox.py; the wire itself in test_wire_fuzz.py.)"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import syft_kernel as sk
from syft_kernel import login
from syft_kernel.core import codec
from syft_kernel.core.keys import generate_keypair, write_keypair
from syft_kernel.launcher import NodeProcess, start_node
from syft_kernel.sample_data import birth_records


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for the module: February births, a matrix and a tensor, owned by ``owner``; a
    second owner ``clinic`` with a dataset of its own; scientists ``alice`` and ``bob``."""
    folder = tmp_path_factory.mktemp("trust")
    proc = start_node(folder / "hospital", name="hospital")
    users = folder / "users"
    with proc.login() as owner:
        owner.datasets.upload(
            "births",
            assets={
                "births": birth_records(month=2, rows=300),
                "matrix": np.arange(12, dtype=np.float64).reshape(3, 4),
                "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            },
            description="Monthly birth records",
            subject_column="mother_id",
        )
        owner.datasets.upload(
            "large",
            assets={
                "big": np.random.default_rng(0).random(1_000_000),
                "tall": pd.DataFrame({"x": np.arange(600_000, dtype=np.float64)}),
            },
            description="large enough for slow operations",
        )
        for name in ("alice", "bob"):
            _, pub = write_keypair(generate_keypair(name), users)
            owner.users.add(name, role="data_scientist", public_key=pub)
        _, clinic_pub = write_keypair(generate_keypair("clinic"), users)
        owner.users.add("clinic", role="owner", public_key=clinic_pub)
    with login(proc.connection_file, key=users / "clinic.key") as clinic:
        clinic.datasets.upload(
            "clinic-secrets", assets={"codes": np.array([11.0, 22.0, 33.0, 44.0])}, description="another owner's data"
        )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def alice(node: NodeProcess) -> Iterator[sk.Client]:
    with login(node.connection_file, key=node.folder.parent / "users" / "alice.key") as client:
        yield client


@pytest.fixture
def owner(node: NodeProcess) -> Iterator[sk.Client]:
    with node.login() as client:
        yield client


def _public(client: sk.Client, values: list[float]) -> str:
    """A public object of the scientist's own (made on the node from literals)."""
    ops = [{"kind": "function", "name": "numpy.linspace", "args": [values[0], values[-1], len(values)], "kwargs": []}]
    body, _ = client.call("run", {"ops": ops, "keep": [0]})
    return str(body["results"][0]["id"])


def _run(
    client: sk.Client,
    ops: list[dict],
    keep: list[int] | None = None,
    bufs: list | None = None,  # type: ignore[type-arg]
    **extra,
) -> dict:  # type: ignore[type-arg]
    body, _ = client.call(
        "run", {"ops": ops, "keep": keep if keep is not None else [len(ops) - 1], **extra}, bufs or []
    )
    return body  # type: ignore[no-any-return]


def _ref(obj_id: str) -> dict[str, str]:
    return {"~": "ref", "id": obj_id}


def _serving(client: sk.Client) -> None:
    m = client.datasets["births"]["matrix"]
    assert (m + 1).shape == (3, 4)


# ---- 2. ops cannot write ------------------------------------------------------------------


def test_output_arguments_are_refused_by_position_and_by_keyword(alice: sk.Client, owner: sk.Client) -> None:
    ds = alice.datasets["births"]
    m, t = ds["matrix"], ds["tensor"]
    public = _public(alice, [0.0, 1.0, 2.0, 3.0])
    attacks = [
        # np.add(private, 0, public): the private values would land in a public object
        [{"kind": "function", "name": "numpy.add", "args": [_ref(m.id), 0, _ref(public)], "kwargs": []}],
        [{"kind": "function", "name": "numpy.add", "args": [_ref(m.id), 0], "kwargs": [["out", _ref(public)]]}],
        # ndarray methods take out= third (sum, mean, cumsum …) or second (min, max, round …)
        [{"kind": "method", "name": "sum", "args": [_ref(m.id), 0, None, _ref(public)], "kwargs": []}],
        [{"kind": "method", "name": "max", "args": [_ref(m.id), 0, _ref(public)], "kwargs": []}],
        [{"kind": "method", "name": "clip", "args": [_ref(m.id), 0, 1, _ref(m.id)], "kwargs": []}],
        [{"kind": "function", "name": "numpy.trace", "args": [_ref(m.id), 0, 0, 1, None, _ref(public)], "kwargs": []}],
        [
            {
                "kind": "function",
                "name": "torch.norm",
                "args": [_ref(t.id), "fro", None, False, _ref(t.id)],
                "kwargs": [],
            }
        ],
        # a ufunc's where= returns uninitialised memory (other users' freed values) where False
        [{"kind": "function", "name": "numpy.add", "args": [_ref(m.id), 1], "kwargs": [["where", False]]}],
    ]
    for ops in attacks:
        with pytest.raises(sk.OpNotAllowed, match=r"out|inplace|where|output"):
            _run(alice, ops)
    # through pointers too: np.multiply(t, 0, t) would zero the cached asset for everyone
    with pytest.raises(sk.OpNotAllowed, match="out"):
        np.multiply(m, 0, m)
    with pytest.raises(sk.OpNotAllowed, match="uninitialised"):
        np.add(m, 1, where=m > 3)
    # nothing was written: the public object and the assets are as they were
    body, bufs = alice.call("get", {"id": public})
    assert codec.decode_value(body["value"], bufs).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert owner.datasets["births"]["matrix"].get().tolist() == np.arange(12.0).reshape(3, 4).tolist()
    assert owner.datasets["births"]["tensor"].get().tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    _serving(alice)


def test_stored_values_are_read_only(alice: sk.Client, owner: sk.Client) -> None:
    """A view shares memory with a cached asset (``tensor.numpy()``, ``matrix.T``): every result
    is frozen, so even an op that writes into its input cannot reach the asset."""
    ds = alice.datasets["births"]
    view = ds["tensor"].numpy()
    with pytest.raises(sk.OpNotAllowed):
        np.negative(view, view)
    # the ordinary, non-writing ops still work on frozen values
    assert (view * 2).shape == (2, 3)
    assert np.exp(ds["matrix"].T).shape == (4, 3)
    assert owner.datasets["births"]["tensor"].get().sum().item() == 15.0


# ---- 5. files are private to the node's user ----------------------------------------------


def test_node_files_are_private(node: NodeProcess, alice: sk.Client) -> None:
    req = (alice.datasets["births"]["matrix"].sum()).request(reason="persist an object")
    assert req.status == "pending"
    folder = node.folder

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    for d in ("assets", "objects", "keys"):
        assert mode(folder / d) == 0o700, d
        files = [p for p in (folder / d).iterdir() if p.is_file()]
        assert files, d
        for p in files:
            assert mode(p) & 0o077 == 0, p
    for f in ("node.db", "node.log"):
        assert mode(folder / f) & 0o077 == 0, f
    for p in folder.glob("node.db-*"):
        assert mode(p) & 0o077 == 0, p
    # the connection file holds only addresses and the public key: readable, so others can log in
    assert mode(folder / "connection.json") & 0o004


def test_private_modes_are_mended_at_start(tmp_path: Path) -> None:
    """A folder made before this rule (or copied with lax modes) is made private when served."""
    proc = start_node(tmp_path / "old", name="old")
    proc.stop()
    for p in [tmp_path / "old" / "assets", tmp_path / "old" / "node.db"]:
        os.chmod(p, 0o777 if p.is_dir() else 0o666)
    proc = start_node(tmp_path / "old", name="old")
    try:
        assert stat.S_IMODE((tmp_path / "old" / "assets").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "old" / "node.db").stat().st_mode) == 0o600
    finally:
        proc.stop()


# ---- 6. a denied request says so ----------------------------------------------------------


def test_get_of_a_denied_value_names_the_request_and_the_reason(alice: sk.Client, owner: sk.Client) -> None:
    total = alice.datasets["births"]["births"]["weight"].sum()
    req = total.request(reason="total weight")
    with pytest.raises(sk.PermissionDenied, match=f"request {req.id} .*still pending"):
        total.get()
    pending = next(r for r in owner.requests.pending if r.id == req.id)
    pending.deny("too identifying for a 300-row month")
    with pytest.raises(sk.PermissionDenied, match="too identifying"):
        req.wait(timeout=10)
    with pytest.raises(sk.PermissionDenied, match=f"request {req.id} .*denied by owner: too identifying") as err:
        total.get()
    assert err.value.data["request_id"] == req.id and err.value.data["status"] == "denied"
    _serving(alice)


def test_frames_are_kept_unchanged_by_pandas_ops(alice: sk.Client, owner: sk.Client) -> None:
    births = alice.datasets["births"]["births"]
    births.fillna(0)
    births.replace(1, 2)
    births.sort_values("weight")
    mine = owner.datasets["births"]["births"].get()
    assert isinstance(mine, pd.DataFrame) and mine.equals(birth_records(month=2, rows=300))


# ---- 3. an approval covers exactly what it runs -------------------------------------------


def _approve(owner: sk.Client, req_id: str, as_client: sk.Client | None = None) -> None:
    client = as_client or owner
    mine = next(r for r in client.requests.pending if r.id == req_id)
    mine.approve("ok")


def test_an_approved_plan_rerun_with_other_literals_releases_nothing(alice: sk.Client, owner: sk.Client) -> None:
    """Approved with a zero weight vector, re-run with one-hot vectors: each would release one
    private value. The hash covers the raw buffers, so the new runs are not covered."""
    m = alice.datasets["births"]["matrix"]

    @sk.plan
    def weighted(x):  # type: ignore[no-untyped-def]
        return (x * np.zeros(4)).sum()

    req = weighted.request(m, reason="a harmless weighted sum")
    _approve(owner, req.id)
    assert req.wait(timeout=10).status == "approved"
    assert weighted(m).get() == 0.0
    approved_hash = weighted.hash
    # same ops, new literal buffer: a fresh hash, so no approval covers it
    weighted.buffers = [np.eye(4)[1].copy()]
    leaked = weighted(m)
    with pytest.raises(sk.PermissionDenied):
        leaked.get()
    # claiming the approved hash for the new buffers is caught: the node hashes what it received
    with pytest.raises(sk.ProtocolError, match="hash does not match"):
        alice.call(
            "run",
            {"ops": weighted.ops, "keep": weighted.outputs, "inputs": [m.id], "plan": approved_hash},
            weighted.buffers,
        )
    _serving(alice)


def test_a_plan_that_names_another_owners_data_needs_that_owner(
    node: NodeProcess, alice: sk.Client, owner: sk.Client
) -> None:
    """The plan's declared input is the hospital's matrix; inside, it also reads the clinic's
    dataset by reference. Its lineage comes from the whole plan, so the hospital alone cannot
    approve it."""
    m = alice.datasets["births"]["matrix"]
    codes = alice.datasets["clinic-secrets"]["codes"]

    @sk.plan
    def sneaky(x):  # type: ignore[no-untyped-def]
        return x.sum() + codes.max()

    req = sneaky.request(m, reason="matrix total")
    seen = next(r for r in owner.requests.pending if r.id == req.id)
    assert "clinic-secrets/codes" in seen.info["datasets"]
    seen.approve("hospital says yes")
    assert alice.requests[req.id].status == "pending"  # the clinic has not approved
    with pytest.raises(sk.PermissionDenied):
        sneaky(m).get()
    with login(node.connection_file, key=node.folder.parent / "users" / "clinic.key") as clinic:
        _approve(owner, req.id, as_client=clinic)
    assert alice.requests[req.id].status == "approved"
    assert sneaky(m).get() == pytest.approx(66.0 + 44.0)


def test_an_approval_does_not_cover_a_dataset_uploaded_again_under_its_name(
    node: NodeProcess, alice: sk.Client
) -> None:
    users = node.folder.parent / "users"
    with login(node.connection_file, key=users / "clinic.key") as clinic:
        clinic.datasets.upload("clinic-v", assets={"a": np.array([1.0, 2.0])}, description="v1")
        a = alice.datasets["clinic-v"]["a"]

        @sk.plan
        def total(x):  # type: ignore[no-untyped-def]
            return x.sum()

        req = total.request(a, reason="total")
        _approve(clinic, req.id, as_client=clinic)
        assert total(a).get() == 3.0
        clinic.datasets.delete("clinic-v")
        clinic.datasets.upload("clinic-v", assets={"a": np.array([1000.0, 2.0])}, description="v2")
    a2 = alice.datasets["clinic-v"]["a"]
    assert a2.id == a.id  # the same name, other content
    with pytest.raises(sk.PermissionDenied):
        total(a2).get()


# ---- 4. no user can stall or exhaust the node ---------------------------------------------


class _Raw:
    """A DEALER with a user's keys, to send a message without waiting for its reply."""

    def __init__(self, node: NodeProcess, key: Path) -> None:
        import zmq

        from syft_kernel.core.keys import read_keypair

        pair = read_keypair(key)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = node.connection["node_public_key"].encode()
        self.sock.curve_publickey, self.sock.curve_secretkey = pair.public.encode(), pair.secret.encode()
        self.sock.linger = 0
        self.sock.connect(next(a for a in node.connection["addresses"] if a.startswith("tcp://")))
        self.next_id = 1

    def send(self, msg_type: str, body: dict) -> int:  # type: ignore[type-arg]
        msg_id, self.next_id = self.next_id, self.next_id + 1
        self.sock.send_multipart(codec.pack_message({"id": msg_id, "type": msg_type}, body))
        return msg_id

    def replies(self, n: int, timeout: float = 120.0) -> list[tuple[dict, dict]]:  # type: ignore[type-arg]
        import msgpack

        out = []
        while len(out) < n:
            assert self.sock.poll(timeout * 1000), f"{len(out)} of {n} replies came"
            frames = self.sock.recv_multipart()
            header = msgpack.unpackb(frames[0])
            if header.get("type") == "reply":
                out.append((header, msgpack.unpackb(frames[1])))
        return out

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _slow_plan(big_id: str, sorts: int = 40) -> dict:  # type: ignore[type-arg]
    """A plan that takes seconds: many sorts of a million floats."""
    ops = [{"kind": "function", "name": "numpy.sort", "args": [_ref(big_id)], "kwargs": []} for _ in range(sorts)]
    return {"ops": ops, "keep": [sorts - 1]}


def _users(node: NodeProcess) -> Path:
    return node.folder.parent / "users"


def test_a_slow_plan_does_not_stall_other_users(node: NodeProcess, alice: sk.Client) -> None:
    import time

    big = alice.datasets["large"]["big"]
    started = time.perf_counter()
    alice.call("run", _slow_plan(big.id, sorts=40))
    per_sort = (time.perf_counter() - started) / 40
    sorts = min(9_000, max(40, int(4.0 / per_sort)))  # a plan of about 4 s on this machine
    slow = _Raw(node, _users(node) / "alice.key")
    try:
        slow.send("run", _slow_plan(big.id, sorts=sorts))
        with login(node.connection_file, key=_users(node) / "bob.key") as bob:
            m = bob.datasets["births"]["matrix"]
            assert (m * 2).shape == (3, 4)  # bob is served while alice's plan runs
            assert bob.call("hello")[0]["user"] == "bob"
        assert not slow.sock.poll(0), f"the slow plan should still be running: {slow.replies(1)}"
        [(header, body)] = slow.replies(1)
        assert header["status"] == "ok", body
    finally:
        slow.close()


def test_a_flood_on_one_connection_is_refused_not_queued_without_end(node: NodeProcess, alice: sk.Client) -> None:
    flood = _Raw(node, _users(node) / "alice.key")
    try:
        flood.send("run", _slow_plan(alice.datasets["large"]["big"].id, sorts=15))
        for _ in range(600):
            flood.send("hello", {})
        replies = flood.replies(601)
        busy = [b for h, b in replies if h["status"] == "error"]
        assert busy and all(b["error"] == "QuotaExceeded" and b["data"]["limit"] == "messages waiting" for b in busy)
        # the plan and the hellos that fit in the connection's queue (128, the plan among them
        # if it arrived with them), the rest refused
        assert 128 <= sum(h["status"] == "ok" for h, _ in replies) <= 129
    finally:
        flood.close()
    _serving(alice)


def test_catastrophic_regexes_run_in_linear_time(alice: sk.Client, owner: sk.Client) -> None:
    """``(a+)+$`` backtracks for hours in Python's re on a long run of a's; the node uses RE2."""
    text = ["a" * 50_000 + "!", "b" * 10, "aaa"]
    frame = pd.DataFrame({"s": text})
    owner.datasets.upload("texts", assets={"t": frame}, description="long strings")
    s = alice.datasets["texts"]["t"]["s"]
    hit = s.str.contains(r"(a+)+$")
    assert hit.dtype == "bool"
    assert owner.datasets["texts"]["t"]["s"].str.contains(r"(a+)+$").get().tolist() == [False, False, True]
    assert owner.datasets["texts"]["t"]["s"].str.count("a+").get().tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(sk.OpNotAllowed, match="RE2"):
        s.str.contains(r"(a)\1")
    with pytest.raises(sk.OpNotAllowed, match="regex"):
        alice.datasets["texts"]["t"].replace("a+", "b", regex=True)
    _serving(alice)


def test_a_huge_transpose_is_refused_before_it_runs(alice: sk.Client, owner: sk.Client) -> None:
    tall = alice.datasets["large"]["tall"]
    with pytest.raises(sk.QuotaExceeded, match="at most 10,000 rows") as err:
        _ = tall.T
    assert err.value.limit == "columns"
    births = alice.datasets["births"]["births"]
    with pytest.raises(sk.QuotaExceeded, match="private"):  # its row count is not public
        _ = births[births["weight"] > 3].T
    assert births.T.type == "DataFrame"  # 300 public rows: allowed
    _serving(alice)


def test_allocations_past_the_machine_are_refused_and_the_node_lives(alice: sk.Client) -> None:
    big = alice.datasets["large"]["big"]
    with pytest.raises(sk.QuotaExceeded, match="memory") as err:
        big.repeat(10**7)  # 80 TB
    assert err.value.limit == "memory"
    with pytest.raises(sk.QuotaExceeded, match="memory"):
        _run(alice, [{"kind": "function", "name": "numpy.linspace", "args": [0, 1, 10**13], "kwargs": []}])
    _serving(alice)


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node whose owner set small limits in node.json."""
    import json

    from syft_kernel.node.nodedir import init_node

    folder = tmp_path_factory.mktemp("tight") / "clinic"
    init_node(folder, "clinic")
    config = json.loads((folder / "node.json").read_text())
    config["limits"] = {"quota_mb": 4, "max_pending_requests": 2, "plan_timeout_s": 0.05}
    (folder / "node.json").write_text(json.dumps(config))
    proc = start_node(folder, name="clinic")
    with proc.login() as owner:
        owner.datasets.upload("d", assets={"big": np.arange(1_000_000, dtype=np.float64)}, description="d")
        _, pub = write_keypair(generate_keypair("carol"), folder.parent / "users")
        owner.users.add("carol", role="data_scientist", public_key=pub)
    try:
        yield proc
    finally:
        proc.stop()


def test_per_user_quotas_bytes_requests_and_time(tight: NodeProcess) -> None:
    with login(tight.connection_file, key=tight.folder.parent / "users" / "carol.key") as carol:
        big = carol.datasets["d"]["big"]
        with pytest.raises(sk.QuotaExceeded, match="MiB") as err:
            big * 2  # 8 MB of results against a 4 MiB quota
        assert err.value.limit == "bytes"
        # what you hold is not told: it sums private results whose sizes (row counts) are hidden
        part = big[:50_000]
        small = part[part > 20_000.0]  # private: how many rows passed is not public
        with pytest.raises(sk.QuotaExceeded) as err:
            big * 3
        assert "hold" not in err.value.message and re.findall(r"\d+", err.value.message) == ["4"]
        del small, part
        half = big[:250_000] * 2  # 2 MB: fits
        with pytest.raises(sk.QuotaExceeded):
            big[:250_000] + 1  # 2 more MB: the quota is full
        del half
        assert (big[:250_000] + 1).shape == (250_000,)  # freed, so it fits again
        sums = [big[:10].sum(), big[10:20].sum(), big[20:30].sum()]
        sums[0].request(reason="one")
        sums[1].request(reason="two")
        with pytest.raises(sk.QuotaExceeded, match="waiting for a decision") as err:
            sums[2].request(reason="three")
        assert err.value.limit == "requests"
        # a plan's intermediate results count while they are alive, and are dropped after last use
        x = {
            "kind": "op",
            "name": "getitem",
            "args": [_ref(big.id), {"~": "slice", "v": [0, 250_000, None]}],
            "kwargs": [],
        }

        def times(i: int, k: float) -> dict:  # type: ignore[type-arg]
            return {"kind": "op", "name": "mul", "args": [{"~": "res", "i": i}, k], "kwargs": []}

        chain = [x, times(0, 2.0), times(1, 2.0), times(2, 2.0), times(3, 2.0)]  # 2 MB alive at a time
        assert carol.call("run", {"ops": chain, "keep": [4]})[0]["results"][0]["meta"]["shape"] == [250_000]
        fan = [
            x,
            times(0, 2.0),
            times(0, 3.0),
            {"kind": "op", "name": "add", "args": [{"~": "res", "i": 1}, {"~": "res", "i": 2}], "kwargs": []},
        ]
        with pytest.raises(sk.QuotaExceeded, match="alive at op") as err:
            carol.call("run", {"ops": fan, "keep": [3]})  # x, x*2 and x*3 alive together: 6 MB
        assert err.value.limit == "bytes"
        sorts = [x] + [{"kind": "function", "name": "numpy.sort", "args": [{"~": "res", "i": 0}], "kwargs": []}] * 2000
        with pytest.raises(sk.QuotaExceeded, match="longer than") as err:
            carol.call("run", {"ops": sorts, "keep": [2000]})  # past the owner's 0.05 s
        assert err.value.limit == "time"
        assert carol.call("hello")[0]["user"] == "carol"


def test_a_code_approval_does_not_cover_a_dataset_uploaded_again(node: NodeProcess, alice: sk.Client) -> None:
    users = _users(node)
    with login(node.connection_file, key=users / "clinic.key") as clinic:
        clinic.datasets.upload("clinic-w", assets={"a": np.array([1.0, 2.0])}, description="v1")
        source = "def total(a):\n    return float(a.sum())\n"
        info = alice.call(
            "code.submit",
            {
                "source": source,
                "fn_name": "total",
                "reason": "total",
                "inputs": {"a": alice.datasets["clinic-w"]["a"].id},
            },
        )[0]
        job = sk.Job(alice, info)
        clinic.datasets.delete("clinic-w")  # closes the requests open on it: they asked about the old data
        clinic.datasets.upload("clinic-w", assets={"a": np.array([1000.0, 2.0])}, description="v2")
        assert clinic.requests[job.id].status == "denied" and "deleted" in clinic.requests[job.id].comment
        with pytest.raises(sk.InvalidArgument, match="already denied"):
            clinic.requests[job.id].approve("ok")


def test_functions_that_work_in_their_input_are_refused(alice: sk.Client, owner: sk.Client) -> None:
    """``overwrite_input=True`` lets numpy reorder its input; ``nan_to_num(copy=False)`` writes
    into it; a tensor handed to numpy is its own (writable) memory unless made read-only."""
    ds = alice.datasets["births"]
    t, m = ds["tensor"], ds["matrix"]
    for ops in (
        [{"kind": "function", "name": "numpy.median", "args": [_ref(t.id)], "kwargs": [["overwrite_input", True]]}],
        [{"kind": "function", "name": "numpy.percentile", "args": [_ref(m.id), 50.0, None, None, True], "kwargs": []}],
        [{"kind": "function", "name": "numpy.nan_to_num", "args": [_ref(m.id)], "kwargs": [["copy", False]]}],
    ):
        with pytest.raises(sk.OpNotAllowed, match="overwrite_input|copy=False"):
            _run(alice, ops)
    assert np.median(t).shape == ()  # reading a tensor through numpy still works
    assert owner.datasets["births"]["tensor"].get().tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_arrays_of_python_objects_are_not_computed(alice: sk.Client) -> None:
    """numpy's loops over Python objects hold the interpreter: an einsum over 700 of them
    stalled every user for seconds."""
    births = alice.datasets["births"]["births"]
    with pytest.raises(sk.OpNotAllowed, match="dtype=object"):
        births["weight"].astype("object")
    with pytest.raises(sk.OpNotAllowed, match="dtype=object"):
        births["weight"].to_numpy(dtype="O")
    strings = births["sex"].to_numpy()  # a string column: an object array
    with pytest.raises(sk.OpNotAllowed, match="array of Python objects"):
        np.einsum("i,j->", strings, strings)
    assert strings.tolist() is not None and strings.ravel().shape == (300,)  # structural ops still run
    _serving(alice)


def test_references_cannot_hide_inside_literals(alice: sk.Client) -> None:
    """A plan's review shows a Series literal as ``<series>``: a reference in its name would be
    read without the reviewer seeing it. Attributes take their target and nothing else."""
    m = alice.datasets["births"]["matrix"]
    tree, bufs = codec.encode_value(pd.Series([1.0, 2.0]))
    tree["name"] = _ref(m.id)
    with pytest.raises(sk.ProtocolError, match="plain data, not a reference"):
        _run(alice, [{"kind": "getattr", "name": "name", "args": [tree], "kwargs": []}], bufs=bufs)
    with pytest.raises(sk.ProtocolError, match="takes its target and nothing else"):
        _run(alice, [{"kind": "getattr", "name": "shape", "args": [_ref(m.id), _ref(m.id)], "kwargs": []}])
    _serving(alice)


def test_small_views_do_not_keep_large_temporaries_alive(node: NodeProcess, alice: sk.Client) -> None:
    """A one-element view of an 8 MB temporary counts 8 bytes against the quota: it is stored as
    a copy, so the temporary is freed."""

    def rss() -> int:
        for line in (Path("/proc") / str(node.proc.pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    big = alice.datasets["large"]["big"]
    views = [(big * 1.0)[0:1] for _ in range(3)]  # warm up the allocator
    before = rss()
    views += [(big * float(k))[0:1] for k in range(40)]  # 40 temporaries of 8 MB each
    assert rss() - before < 150 * 2**20  # not the 320 MB the temporaries would hold
    assert all(v.shape == (1,) for v in views)


def test_keeping_an_index_works(alice: sk.Client) -> None:
    births = alice.datasets["births"]["births"]
    for attr in ("columns", "index"):  # stored, so counted against the quota
        body = _run(alice, [{"kind": "getattr", "name": attr, "args": [_ref(births.id)], "kwargs": []}])
        assert body["results"][0]["meta"]["type"] == "Index"


def test_freeing_in_the_header_frees_only_your_own_objects(node: NodeProcess, alice: sk.Client) -> None:
    with login(node.connection_file, key=_users(node) / "bob.key") as bob:
        theirs = bob.datasets["births"]["matrix"] + 1
        raw = _Raw(node, _users(node) / "alice.key")
        try:
            raw.sock.send_multipart(codec.pack_message({"id": 1, "type": "hello", "free": [theirs.id]}, {}))
            raw.sock.send_multipart(codec.pack_message({"id": 2, "type": "hello", "free": "everything"}, {}))
            (h1, _), (h2, b2) = raw.replies(2)
        finally:
            raw.close()
        assert h1["status"] == "ok"
        assert h2["status"] == "error" and "free is a list" in b2["message"]
        assert theirs.shape == (3, 4) and bob.call("objects.describe", {"id": theirs.id})[0]["id"] == theirs.id


def test_library_errors_on_private_data_do_not_quote_it(alice: sk.Client, owner: sk.Client) -> None:
    """pandas puts the offending value in its message: ``astype(float)`` of a string column said
    "could not convert string to float: 'vaginal'", one private value per round trip. Now an op on
    private data fails only when it fails on the mock, with the mock's message: exactly what
    ``pd.to_numeric(ptr.mock)`` says locally, nothing about the data."""
    births = alice.datasets["births"]["births"]
    one = births["delivery"].iloc[0:1]
    with pytest.raises(sk.RemoteError) as err:
        _run(alice, [{"kind": "function", "name": "pandas.to_numeric", "args": [_ref(one.id)], "kwargs": []}])
    with pytest.raises(ValueError) as local:
        pd.to_numeric(one.mock)
    assert "fails on the mock data" in err.value.message and str(local.value) in err.value.message
    # public data keeps the library's message: it says nothing private
    tree, bufs = codec.encode_value(pd.Series(["x"]))
    with pytest.raises(sk.RemoteError, match="'x'"):
        _run(alice, [{"kind": "function", "name": "pandas.to_numeric", "args": [tree], "kwargs": []}], bufs=bufs)
