"""Differential privacy: releases at once within budget, real OpenDP noise, exact composition,
no overspending under concurrency, clear refusals."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest

import syft_kernel as sk
from syft_kernel.node.ledger import epsilon_of_rho, rho_for, spent_epsilon

BOUNDS = (0.5, 6.0)


@pytest.fixture
def dp_user(syft_node, owner: sk.Client, births_df: pd.DataFrame, make_user):  # type: ignore[no-untyped-def]
    owner.datasets.upload("births", assets={"births": births_df}, bounds={"weight": BOUNDS})
    key = make_user("alice")
    owner.budget.set("alice", "births", epsilon=1000.0, delta=1e-6)
    with sk.login(syft_node.connection_file, key=key) as ds:
        yield ds


def test_releases_come_back_at_once_and_are_close(dp_user: sk.Client, owner: sk.Client, births_df) -> None:  # type: ignore[no-untyped-def]
    births = dp_user.datasets["births"]["births"]
    w = births_df["weight"]
    assert births["weight"].dp.mean(epsilon=50, bounds=BOUNDS) == pytest.approx(w.mean(), abs=0.05)
    assert births["weight"].dp.mean(epsilon=50) == pytest.approx(w.mean(), abs=0.05)  # declared bounds
    assert births.dp.count(epsilon=50) == pytest.approx(len(births_df), abs=2)
    assert births["weight"].dp.sum(epsilon=50, bounds=BOUNDS) == pytest.approx(w.sum(), abs=2)
    assert births["weight"].dp.var(epsilon=50, bounds=BOUNDS) == pytest.approx(w.var(), abs=0.05)
    assert births["weight"].dp.quantile(0.5, bounds=BOUNDS, epsilon=50) == pytest.approx(w.median(), abs=0.05)
    hist = births["sex"].dp.histogram(categories=["F", "M"], epsilon=50)
    assert list(hist.index) == ["F", "M"]
    np.testing.assert_allclose(hist.to_numpy(), births_df["sex"].value_counts().reindex(["F", "M"]), atol=2)
    edges = births["weight"].dp.histogram(bins=[0.5, 2.5, 3.5, 6.0], epsilon=50)
    np.testing.assert_allclose(edges.to_numpy(), np.histogram(w, bins=[0.5, 2.5, 3.5, 6.0])[0], atol=2)
    grouped = births.dp.groupby("sex").mean("weight", bounds=BOUNDS, epsilon=50)
    np.testing.assert_allclose(grouped.to_numpy(), births_df.groupby("sex", observed=True)["weight"].mean(), atol=0.05)
    gaussian = births["weight"].dp.mean(epsilon=20, delta=1e-6, bounds=BOUNDS)
    assert gaussian == pytest.approx(w.mean(), abs=0.1)
    assert dp_user.last_release["mechanism"] == "gaussian"
    # no request, no owner action; each release is in the audit log with its cost
    assert owner.requests.list() == []
    releases = owner.audit(action="dp.release")
    assert len(releases) == 10 and {e["detail"]["mechanism"] for e in releases} == {"laplace", "gaussian"}


def test_laplace_noise_has_the_advertised_scale(dp_user: sk.Client) -> None:
    births = dp_user.datasets["births"]["births"]
    counts = np.array([births.dp.count(epsilon=1.0) for _ in range(300)])
    # Laplace(scale 1/epsilon = 1) has standard deviation sqrt(2): generous bounds, negligible failure odds
    assert 0.75 * math.sqrt(2) < counts.std() < 1.3 * math.sqrt(2)
    assert abs(counts.mean() - 500) < 0.5


def test_gaussian_noise_has_the_advertised_scale(dp_user: sk.Client) -> None:
    births = dp_user.datasets["births"]["births"]
    counts = np.array([births.dp.count(rho=0.5) for _ in range(300)])
    # sensitivity 1, rho 0.5: sigma = 1 / sqrt(2 * 0.5) = 1
    assert 0.8 < counts.std() < 1.2


def test_composition_arithmetic_is_exact(dp_user: sk.Client, owner: sk.Client) -> None:
    owner.budget.set("alice", "births", epsilon=2.0, delta=1e-3)
    births = dp_user.datasets["births"]["births"]
    for _ in range(4):
        births.dp.count(epsilon=0.25)
    assert dp_user.budget.spent("births") == pytest.approx(1.0, abs=1e-12)
    births.dp.count(rho=1 / 32)
    expected = min(1.0 + 0.6880024554878085, epsilon_of_rho(1 / 32 + 4 * 0.25**2 / 2, 1e-3))
    assert dp_user.budget.spent("births") == pytest.approx(expected, rel=1e-9)
    assert [h["mechanism"] for h in dp_user.budget.history] == ["laplace"] * 4 + ["gaussian"]


def test_conversions_match_opendp() -> None:
    assert epsilon_of_rho(1 / 32, 1e-3) == pytest.approx(0.6880024554878085, rel=1e-12)
    assert epsilon_of_rho(rho_for(1.0, 1e-6), 1e-6) == pytest.approx(1.0, rel=1e-6)
    assert spent_epsilon([0.1, 0.2], 0.0, 1e-6) == pytest.approx(0.3)


def test_budget_exceeded_then_ask_for_more(dp_user: sk.Client, owner: sk.Client) -> None:
    owner.budget.set("alice", "births", epsilon=0.3, delta=0.0)
    births = dp_user.datasets["births"]["births"]
    births["weight"].dp.mean(epsilon=0.2, bounds=BOUNDS)
    with pytest.raises(sk.BudgetExceeded, match="ds.budget.request") as err:
        births["weight"].dp.mean(epsilon=0.2, bounds=BOUNDS)
    assert err.value.left == pytest.approx(0.1)
    with pytest.raises(sk.InvalidArgument, match="delta = 0"):
        births.dp.count(rho=0.01)
    req = dp_user.budget.request("births", epsilon=0.5, reason="one more mean")
    owner.requests[req.id].approve("ok")
    req.wait(timeout=10)
    assert dp_user.budget["births"]["epsilon"] == pytest.approx(0.8)
    births["weight"].dp.mean(epsilon=0.2, bounds=BOUNDS)
    assert dp_user.budget.left("births") == pytest.approx(0.4)


def test_no_budget_no_release(syft_node, owner: sk.Client, births_df, make_user) -> None:  # type: ignore[no-untyped-def]
    owner.datasets.upload("births", assets={"births": births_df})
    with sk.login(syft_node.connection_file, key=make_user("bob")) as bob:
        with pytest.raises(sk.BudgetExceeded, match="no privacy budget"):
            bob.datasets["births"]["births"].dp.count(epsilon=0.1)


def test_concurrent_queries_never_overspend(syft_node, dp_user: sk.Client, owner: sk.Client) -> None:  # type: ignore[no-untyped-def]
    owner.budget.set("alice", "births", epsilon=1.0, delta=0.0)
    ok: list[float] = []
    refused: list[float] = []
    key = syft_node.folder.parent / "users" / "alice.key"

    def query() -> None:
        with sk.login(syft_node.connection_file, key=key) as c:
            try:
                ok.append(c.datasets["births"]["births"].dp.count(epsilon=0.03))
            except sk.BudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=query) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(ok) + len(refused) == 100
    assert len(ok) == 33  # floor(1.0 / 0.03): every release that fits, and not one more
    assert dp_user.budget.spent("births") <= 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda b: b["height"].dp.mean(epsilon=0.1), "bounds"),  # no bounds given, none declared
        (lambda b: b["weight"].dp.mean(epsilon=0.1, bounds=(6.0, 0.5)), "lower < upper"),
        (lambda b: b["weight"].dp.mean(epsilon=-1, bounds=BOUNDS), "epsilon must be a positive"),
        (lambda b: b["weight"].dp.mean(epsilon=float("nan"), bounds=BOUNDS), "epsilon must be a positive"),
        (lambda b: b["weight"].dp.mean(epsilon=0.1, delta=1.0, bounds=BOUNDS), "delta must be between"),
        (lambda b: b["sex"].dp.mean(epsilon=0.1, bounds=BOUNDS), "numeric column"),
        (lambda b: b.dp.groupby("mother_id").mean("weight", bounds=BOUNDS, epsilon=0.1), "public keys"),
        (lambda b: b.dp.groupby("mother_id", categories=list(range(5000))).count(epsilon=0.1), "1 to 1000"),
        (lambda b: b["weight"].dp.quantile(0.5, bounds=BOUNDS, epsilon=None), "epsilon must be a positive"),
        (lambda b: b["weight"].dp.quantile(1.5, bounds=BOUNDS, epsilon=0.1), "between 0 and 1"),
        (lambda b: b.dp.mean(epsilon=0.1, bounds=BOUNDS), "one column"),
    ],
)
def test_bad_dp_queries_are_refused(dp_user: sk.Client, owner: sk.Client, call, match: str) -> None:  # type: ignore[no-untyped-def]
    births = dp_user.datasets["births"]["births"]
    with pytest.raises(sk.InvalidArgument, match=match):
        call(births)
    assert dp_user.budget.spent("births") == 0.0  # a refused query costs nothing
    assert births.dp.count(epsilon=1.0) > 0


def test_a_charge_is_never_lost(tmp_path, births_df) -> None:  # type: ignore[no-untyped-def]
    node = sk.start_node(tmp_path / "h", name="hospital")
    key, pub = sk.write_keypair(sk.generate_keypair("alice"), tmp_path)
    with node.login() as owner:
        owner.users.add("alice", public_key=pub)
        owner.datasets.upload("births", assets={"births": births_df})
        owner.budget.set("alice", "births", epsilon=10.0)
    ds = sk.login(node.connection_file, key=key)
    done = 0
    for _ in range(10):
        ds.datasets["births"]["births"].dp.count(epsilon=0.1)
        done += 1
    ds._send("dp.query", {"target": "asset:births/births", "query": "count", "params": {"epsilon": 0.1}})
    node.kill()  # maybe mid-query
    ds.close()
    node = sk.start_node(tmp_path / "h", name="hospital")
    try:
        with sk.login(node.connection_file, key=key) as ds:
            releases = ds.budget["births"]["releases"]
            assert releases in (done, done + 1)  # every release that left was charged
            assert ds.budget.spent("births") == pytest.approx(0.1 * releases)
    finally:
        node.stop()


def test_individual_filter_drops_a_spent_subject(syft_node, owner: sk.Client, make_user) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    # 99 subjects weigh 1, one weighs 6: the heavy one uses the whole worst case of a sum
    frame = pd.DataFrame({"pid": np.arange(100), "w": np.r_[np.full(99, 1.0), 6.0]})
    owner.datasets.upload("d", assets={"t": frame}, subject_column="pid", subject_limit=1.0)
    key = make_user("alice")
    owner.budget.set("alice", "d", epsilon=1000.0)

    def losses() -> dict[str, float]:
        with sqlite3.connect(syft_node.folder / "node.db") as db:
            return dict(db.execute("SELECT subject, epsilon FROM subject_losses WHERE user='alice'").fetchall())

    with sk.login(syft_node.connection_file, key=key) as ds:
        t = ds.datasets["d"]["t"]
        t["w"].dp.sum(epsilon=1.0, bounds=(0, 6))  # scale 6: heavy loses 6/6 = 1.0, the others 1/6
        first = losses()
        assert first["99"] == pytest.approx(1.0) and first["0"] == pytest.approx(1 / 6)
        assert owner.budget.of("alice", "d")["spent_subjects"] == 1
        t.dp.count(epsilon=0.5)  # scale 2: 0.5 more each, which the heavy subject no longer has
        second = losses()
        assert second["99"] == pytest.approx(1.0)  # filtered out: did not contribute, lost nothing
        assert second["0"] == pytest.approx(1 / 6 + 0.5)
        t.dp.count(epsilon=0.5)  # now the light subjects would pass 1.0 too: everyone is filtered
        assert losses() == second
        assert owner.budget.of("alice", "d")["spent_subjects"] == 1


def test_history_records_the_running_total(published, scientist) -> None:  # type: ignore[no-untyped-def]
    published.budget.set("alice", "birth-records-feb", epsilon=1.0, delta=1e-6)
    weight = scientist.datasets["birth-records-feb"]["births"]["weight"]
    weight.dp.mean(epsilon=0.2, bounds=BOUNDS)
    weight.dp.mean(rho=0.01, bounds=BOUNDS)
    history = scientist.budget.history
    assert [round(h["spent"], 9) for h in history][0] == 0.2
    assert history[1]["spent"] == pytest.approx(scientist.budget.spent("birth-records-feb"))
    summary = scientist.call("budgets.get", {"history": False})[0]
    assert "history" not in summary and summary["budgets"][0]["releases"] == 2


def test_a_release_that_cannot_be_noised_is_refused_before_it_is_charged(dp_user: sk.Client, owner: sk.Client) -> None:  # type: ignore[no-untyped-def]
    """An attacker's review: an epsilon so small that the noise scale is infinite (or that costs
    nothing at all), or bounds so wide that the sensitivity overflows, crashed the release after
    the charge. Now refused first, with nothing spent, and the node keeps serving."""
    w = dp_user.datasets["births"]["births"]["weight"]
    h = dp_user.datasets["births"]["births"]["height"]  # no declared bounds: any finite pair is taken
    before = dp_user.budget.spent("births")
    for query, match in [
        (lambda: w.dp.mean(epsilon=5e-324, bounds=(0.5, 6.0)), "at least"),
        (lambda: w.dp.count(epsilon=1e-300), "at least"),
        (lambda: w.dp.count(epsilon=1e-8, delta=1e-300), "rho"),
        (lambda: h.dp.var(epsilon=1.0, bounds=(-1e300, 1e300)), "noise scale is not finite"),
    ]:
        with pytest.raises(sk.InvalidArgument, match=match):
            query()
    assert dp_user.budget.spent("births") == before
    assert w.dp.count(epsilon=0.1) > 0  # still serving
    with pytest.raises(sk.InvalidArgument, match="since is a time"):
        owner.call("audit.list", {"since": float("inf")})
    assert owner.audit(since=2**63 + 1) == []  # an integer beyond SQLite's is a float here: none that late
