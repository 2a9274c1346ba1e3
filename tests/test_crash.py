"""Nothing is lost: a node killed with SIGKILL mid-flow restarts from its folder with its requests,
approvals, datasets and audit intact, and an interrupted code run marked failed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import syft_kernel as sk
from syft_kernel.core import codec
from syft_kernel.core.keys import decision_message
from syft_kernel.launcher import start_node


def spin(births):  # type: ignore[no-untyped-def]
    total = 0
    while True:
        total += 1


def _setup(tmp_path: Path, births_df):  # type: ignore[no-untyped-def]
    node = start_node(tmp_path / "h", name="hospital")
    key, pub = sk.write_keypair(sk.generate_keypair("alice"), tmp_path)
    with node.login() as owner:
        owner.users.add("alice", public_key=pub)
        owner.datasets.upload("births", assets={"births": births_df})
    return node, key


def test_kill_between_request_and_approval(tmp_path: Path, births_df) -> None:  # type: ignore[no-untyped-def]
    node, key = _setup(tmp_path, births_df)
    ds = sk.login(node.connection_file, key=key)
    ptr = ds.datasets["births"]["births"]["weight"].mean()
    req = ptr.request(reason="before the crash")
    ds.close()
    node.kill()
    node = start_node(tmp_path / "h", name="hospital")
    try:
        with node.login() as owner:
            (pending,) = owner.requests.pending
            assert pending.id == req.id and pending.reason == "before the crash"
            assert pending.plan[-1].endswith(".mean()")
            pending.approve("after the restart")
            assert [d for d in owner.datasets] == ["births"]
            actions = [e["action"] for e in owner.audit]
            assert "datasets.upload" in actions and "request.create" in actions and "approve" in actions
        with sk.login(node.connection_file, key=key) as ds:
            again = ds.requests[req.id].wait(timeout=10)
            assert again.status == "approved"
            # the requested object was kept on disk: the pointer's id still works after the restart
            value = ds.call("get", {"id": ptr.id})[0]
            assert codec.decode_value(value["value"], []) == pytest.approx(births_df["weight"].mean())
    finally:
        node.stop()


def test_kill_during_approvals_leaves_each_decision_whole(tmp_path: Path, births_df) -> None:  # type: ignore[no-untyped-def]
    node, key = _setup(tmp_path, births_df)
    ds = sk.login(node.connection_file, key=key)
    births = ds.datasets["births"]["births"]
    reqs = [births["weight"].quantile(q / 100).request(reason=f"q{q}") for q in range(1, 21)]
    owner = node.login()
    for r in reqs:  # send all decisions without waiting, then kill the node while it works on them
        info = owner.requests[r.id].info
        nonce = f"{r.id}-nonce-0000000"
        sig = owner.key.sign(decision_message("hospital", r.id, info["content_hash"], "approve", nonce))
        owner._send("requests.decide", {"id": r.id, "decision": "approve", "nonce": nonce, "signature": sig})
    time.sleep(0.05)
    node.kill()
    owner.close()
    ds.close()
    node = start_node(tmp_path / "h", name="hospital")
    try:
        with node.login() as owner:
            for r in owner.requests.list():
                decided = [a for a in r.approvals if a["decision"] == "approve"]
                # all or nothing: an approved request has its signed approval, a pending one has none
                assert (r.status, len(decided)) in (("approved", 1), ("pending", 0))
            audit_approvals = len(owner.audit(action="approve"))
            assert audit_approvals == sum(r.status == "approved" for r in owner.requests.list())
    finally:
        node.stop()


def test_kill_during_a_code_run_marks_it_failed(tmp_path: Path, births_df) -> None:  # type: ignore[no-untyped-def]
    node, key = _setup(tmp_path, births_df)
    ds = sk.login(node.connection_file, key=key)
    job = ds.code.submit(spin, inputs={"births": ds.datasets["births"]["births"]}, reason="r")
    with node.login() as owner:
        owner.requests[job.id].approve("ok", timeout=20)
        deadline = time.monotonic() + 20
        while owner.requests[job.id].run_status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owner.requests[job.id].run_status == "running"
    ds.close()
    node.kill()
    node = start_node(tmp_path / "h", name="hospital")
    try:
        with sk.login(node.connection_file, key=key) as ds:
            with pytest.raises(sk.RemoteError, match="node stopped during the run"):
                ds.code[job.id].wait_done(timeout=10)
        assert "interrupted code run" in node.log()
    finally:
        node.stop()
