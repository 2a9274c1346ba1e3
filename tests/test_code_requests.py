"""Code requests: reviewed source, runs only after approval, in an OS sandbox with limits
(the attacks on the sandbox itself are in test_sandbox.py)."""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest

import syft_kernel as sk


def mean_by_sex(births):  # type: ignore[no-untyped-def]
    return births.groupby("sex", observed=True)["weight"].mean().round(3)


def test_submit_review_approve_run(scientist: sk.Client, published: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    births = scientist.datasets["birth-records-feb"]["births"]
    job = scientist.code.submit(mean_by_sex, inputs={"births": births}, reason="weights by sex")
    assert job.status == "pending" and job.kind == "code"
    local = job.run_on_mock()
    pd.testing.assert_series_equal(local, mean_by_sex(births.mock))
    seen = published.requests[job.id]
    assert "def mean_by_sex(births):" in seen.source and "groupby" in seen.source
    assert published.stats()["counters"].get("alice:code.submit") == 1
    seen.approve("ok", timeout=60)
    out = job.result(timeout=120)
    assert job.run_status == "done"
    pd.testing.assert_series_equal(out.get(), mean_by_sex(births_df))
    assert os.getpid() != 0
    entries = published.audit(action="code.run")
    assert entries and entries[0]["detail"]["result"] == "done"


def test_code_never_runs_before_approval_or_after_denial(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    job = scientist.code.submit(mean_by_sex, inputs={"births": births}, reason="r")
    assert job.refresh().run_status is None
    published.requests[job.id].deny("use the DP API instead")
    with pytest.raises(sk.PermissionDenied, match="DP API"):
        job.result(timeout=10)
    assert published.requests[job.id].run_status is None
    assert not published.audit(action="code.run")


def _run(scientist: sk.Client, published: sk.Client, fn, **limits):  # type: ignore[no-untyped-def]
    births = scientist.datasets["birth-records-feb"]["births"]
    job = scientist.code.submit(fn, inputs={"births": births}, reason="r")
    published.requests[job.id].approve("ok", **limits)
    return job


def writes_files(births):  # type: ignore[no-untyped-def]
    with open("/root/stolen.csv", "w") as f:  # the owner's home (the sandbox's HOME is its /tmp)
        f.write("x")
    return 1


def runs_a_shell(births):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.run(["id"]).returncode


def reads_the_node_database(births):  # type: ignore[no-untyped-def]
    return open("/etc/hostname").read()


def never_returns(births):  # type: ignore[no-untyped-def]
    while True:
        pass


def allocates_20_gb(births):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.ones(20 * 1024**3 // 8).sum()


def crashes(births):  # type: ignore[no-untyped-def]
    raise ValueError("bad luck")


def returns_a_function(births):  # type: ignore[no-untyped-def]
    return print


@pytest.mark.syft_shared_node
@pytest.mark.parametrize(
    "fn, limits, match",
    [
        (writes_files, {}, "Read-only file system"),
        (runs_a_shell, {}, "PermissionError: .*Operation not permitted"),
        (reads_the_node_database, {}, "No such file or directory: '/etc/hostname'"),
        (never_returns, {"timeout": 2}, "longer than its 2 s limit|time limit"),
        (allocates_20_gb, {"memory_mb": 1024}, "memory"),
        (crashes, {}, "ValueError: bad luck"),
        (returns_a_function, {}, "could not be sent: .*cannot send"),
    ],
)
def test_bad_code_fails_boundedly_and_the_node_lives_on(
    scientist: sk.Client, published: sk.Client, fn, limits, match
) -> None:  # type: ignore[no-untyped-def]
    job = _run(scientist, published, fn, **limits)
    with pytest.raises(sk.RemoteError) as err:
        job.result(timeout=120)
    # the scientist learns the kind of failure; the code's own message (which could quote private
    # data) is in the owner's audit log
    entry = published.audit(action="code.run", target=job.id)[0]["detail"]
    assert re.search(match, f"{err.value.message} {entry.get('detail', '')}"), (err.value.message, entry)
    if entry.get("detail"):
        assert "bad luck" not in err.value.message and "audit log" in err.value.message
    assert job.run_status == "failed"
    assert published.call("hello")[0]["node"] == "hospital"
    assert not os.path.exists(os.path.expanduser("~/stolen.csv"))


@pytest.mark.syft_shared_node
def test_bad_submissions(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    with pytest.raises(sk.InvalidArgument, match="does not parse"):
        scientist.call("code.submit", {"source": "def f(:", "fn_name": "f", "inputs": {}, "reason": "r"})
    with pytest.raises(sk.InvalidArgument, match="must define the function"):
        scientist.call("code.submit", {"source": "x = 1", "fn_name": "f", "inputs": {}, "reason": "r"})
    with pytest.raises(sk.NotFound):
        scientist.call(
            "code.submit",
            {"source": "def f(b): return 1", "fn_name": "f", "inputs": {"b": "o" + "0" * 24}, "reason": "r"},
        )
    with pytest.raises(sk.InvalidArgument, match="say why"):
        scientist.code.submit(mean_by_sex, inputs={"births": births}, reason="")
    job = scientist.code.submit(mean_by_sex, inputs={"births": births}, reason="r")
    with pytest.raises(sk.InvalidArgument, match="limit"):
        published.requests[job.id].approve("ok", timeout=-1)
    assert published.requests[job.id].status == "pending"
