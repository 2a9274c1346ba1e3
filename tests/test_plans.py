"""Plans: traced functions, stable hashes, one round trip, mock runs, and plan approval."""

from __future__ import annotations

import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel.core import codec

# Its tests only read from the node, or write under names of their own: they share one
# (syft_shared_node, syft_kernel/pytest_plugin.py); the ones marked syft_own_node need a fresh one.
pytestmark = pytest.mark.syft_shared_node


@sk.plan
def weight_stats(births):  # type: ignore[no-untyped-def]
    w = births["weight"]
    by_sex = births.groupby("sex", observed=True)["weight"].mean()
    return w.mean(), by_sex


def runs(owner: sk.Client, user: str = "alice") -> int:
    return int(owner.stats()["counters"].get(f"{user}:run", 0))


def test_a_plan_runs_in_one_round_trip(scientist: sk.Client, published: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    births = scientist.datasets["birth-records-feb"]["births"]
    births.mock  # noqa: B018  (tracing reads types off the mock; fetch it before counting)
    before = runs(published)
    mean, by_sex = weight_stats(births)
    assert runs(published) - before == 1
    assert mean.private and by_sex.type == "Series"
    assert codec.decode_value(published.call("get", {"id": mean.id})[0]["value"], []) == pytest.approx(
        births_df["weight"].mean()
    )


def test_readable_form_and_stable_hash(scientist: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    p = sk.plan(weight_stats.fn).trace(births)
    assert p.lines() == [
        "v1 = in0['weight']",
        "v2 = in0.groupby('sex', observed=True)",
        "v3 = v2['weight']",
        "v4 = v3.mean()",
        "v5 = v1.mean()",
        "return v5, v4",
    ]
    again = sk.plan(weight_stats.fn).trace(births)
    assert p.hash == again.hash and len(p.hash) == 64

    @sk.plan
    def other(b):  # type: ignore[no-untyped-def]
        return b["weight"].median()

    assert other.trace(births).hash != p.hash
    assert "plan weight_stats" in repr(p)


def test_run_on_mock_is_local_and_matches_pandas(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]
    mock = births.mock
    before = runs(published)
    mean, by_sex = weight_stats.run_on_mock(births)
    assert runs(published) == before
    assert mean == pytest.approx(mock["weight"].mean())
    pd.testing.assert_series_equal(by_sex, mock.groupby("sex", observed=True)["weight"].mean())


@pytest.mark.syft_own_node  # counts the node's objects
def test_the_whole_plan_is_validated_before_anything_runs(scientist: sk.Client, published: sk.Client) -> None:
    births = scientist.datasets["birth-records-feb"]["births"]

    @sk.plan
    def sneaky(b):  # type: ignore[no-untyped-def]
        return b["weight"].sum(), b.to_pickle("/tmp/x")

    with pytest.raises(sk.OpNotAllowed, match="DataFrame.to_pickle"):
        sneaky(births)
    ops = [
        {"kind": "method", "name": "sum", "args": [{"~": "in", "i": 0}]},
        {"kind": "function", "name": "numpy.save", "args": ["/tmp/x", {"~": "res", "i": 0}]},
    ]
    objects = published.stats()["objects"]
    with pytest.raises(sk.OpNotAllowed, match="numpy.save"):
        scientist.call("run", {"ops": ops, "keep": [0], "inputs": [births.id]})
    assert published.stats()["objects"] == objects


def test_an_approved_plan_releases_later_runs(scientist: sk.Client, published: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    births = scientist.datasets["birth-records-feb"]["births"]
    req = weight_stats.request(births, reason="weekly report")
    assert req.kind == "plan" and req.plan[0] == "v1 = asset('birth-records-feb/births')['weight']"
    first_mean, _ = weight_stats(births)
    with pytest.raises(sk.PermissionDenied):
        first_mean.get()
    published.requests[req.id].approve("every week")
    req.wait(timeout=10)
    mean, by_sex = weight_stats(births)  # no new request for this run
    assert mean.get() == pytest.approx(births_df["weight"].mean())
    pd.testing.assert_series_equal(by_sex.get(), births_df.groupby("sex", observed=True)["weight"].mean())
    # the approval is for this plan only: a different plan on the same data is still private
    with pytest.raises(sk.PermissionDenied):
        births["weight"].median().get()
    # and a plan whose claimed hash does not match its ops is refused
    ops = weight_stats.ops
    with pytest.raises(sk.ProtocolError, match="hash does not match"):
        scientist.call("run", {"ops": ops[:1], "keep": [0], "inputs": [births.id], "plan": weight_stats.hash})
    assert codec.PROTOCOL_VERSION == 1


def test_batches_record_and_send_once(scientist: sk.Client, published: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    births = scientist.datasets["birth-records-feb"]["births"]
    births.mock  # noqa: B018
    before = runs(published)
    with scientist.batch():
        x = births["weight"] * 1.0
        for _ in range(50):
            x = x + 1
        total = x.sum()
        assert total.pending and runs(published) == before
    assert not total.pending and runs(published) - before == 1
    with pytest.raises(sk.RemoteError, match=r"line \d+: bad = births\[\"nope\"\]"):
        with scientist.batch():
            bad = births["nope"]
    with pytest.raises(sk.RemoteError):
        bad.get()
