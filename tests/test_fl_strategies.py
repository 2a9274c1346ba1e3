"""Federated-learning aggregation strategies (syft_kernel.fl.strategies): pure unit tests, no node.

Each strategy is checked against the identity or the paper's formula it implements, written
out by hand here, not against its own code.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from syft_kernel.core.errors import InvalidArgument
from syft_kernel.fl.strategies import (
    STRATEGIES,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
    Update,
    strategy_from,
)

NODES = [f"node-{i}" for i in range(10)]


def update(node: str, examples: int = 1, **weights: Any) -> Update:
    return Update(node=node, weights={k: torch.as_tensor(v) for k, v in weights.items()}, examples=examples, metrics={})


def scalar_updates(values: list[float], examples: list[int] | None = None) -> list[Update]:
    """One float64 entry ``w`` of shape (1,) per update."""
    examples = examples or [1] * len(values)
    return [
        update(f"n{i}", e, w=torch.tensor([v], dtype=torch.float64)) for i, (v, e) in enumerate(zip(values, examples))
    ]


def instance(name: str, **params: Any) -> Strategy:
    """A registered strategy with its defaults (FedProx needs mu)."""
    required: dict[str, Any] = {"mu": 0.01} if name == "FedProx" else {}
    return STRATEGIES[name](**required, **params)


def model(dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(2, 3, generator=g).to(dtype),
        "layer.bias": torch.randn(3, generator=g).to(dtype),
        "scale": torch.randn((), generator=g).to(dtype),
    }


def node_updates(dtype: torch.dtype = torch.float32, n: int = 5) -> list[Update]:
    return [Update(f"n{i}", model(dtype, seed=i + 1), examples=10 * (i + 1), metrics={"loss": 0.5}) for i in range(n)]


# FedAvg and FedProx


def test_fedavg_is_the_examples_weighted_mean() -> None:
    updates = [update("a", 1, w=[1.0, 2.0], b=0.0), update("b", 3, w=[3.0, 6.0], b=4.0)]
    out = FedAvg().aggregate(1, {"w": torch.zeros(2), "b": torch.tensor(9.0)}, updates)
    # (1 * 1 + 3 * 3) / 4, (1 * 2 + 3 * 6) / 4, (1 * 0 + 3 * 4) / 4
    assert torch.equal(out["w"], torch.tensor([2.5, 5.0]))
    assert torch.equal(out["b"], torch.tensor(3.0))


def test_fedavg_of_identical_updates_is_that_update() -> None:
    weights = model()
    updates = [Update("a", weights, 1, {}), Update("b", weights, 3, {})]
    out = FedAvg().aggregate(1, model(seed=9), updates)
    assert all(torch.equal(out[k], weights[k]) for k in weights)


def test_fedprox_aggregates_like_fedavg_and_asks_nodes_for_the_proximal_term() -> None:
    global_weights, updates = model(), node_updates()
    prox = FedProx(mu=0.1)
    expected = FedAvg().aggregate(1, global_weights, updates)
    assert all(torch.equal(v, expected[k]) for k, v in prox.aggregate(1, global_weights, updates).items())
    assert prox.fit_config() == {"proximal_mu": 0.1}
    assert FedAvg().fit_config() == {}


# FedAvgM


def test_fedavgm_without_momentum_and_unit_rate_is_fedavg() -> None:
    global_weights, updates = model(torch.float64), node_updates(torch.float64)
    out = FedAvgM(server_lr=1.0, momentum=0.0).aggregate(1, global_weights, updates)
    expected = FedAvg().aggregate(1, global_weights, updates)
    for k in expected:
        torch.testing.assert_close(out[k], expected[k], rtol=0, atol=1e-12)


def test_fedavgm_momentum_accumulates_over_rounds() -> None:
    strategy = FedAvgM(server_lr=0.5, momentum=0.9)
    # Round 1: g = 1.0 - 0.0 = 1, m = 1, w = 1 - 0.5 * 1 = 0.5.
    w1 = strategy.aggregate(1, {"w": torch.tensor([1.0], dtype=torch.float64)}, scalar_updates([0.0]))
    torch.testing.assert_close(w1["w"], torch.tensor([0.5], dtype=torch.float64))
    # Round 2: g = 0.5 - 0.3 = 0.2, m = 0.9 * 1 + 0.2 = 1.1, w = 0.5 - 0.5 * 1.1 = -0.05.
    w2 = strategy.aggregate(2, w1, scalar_updates([0.2, 0.4]))
    torch.testing.assert_close(w2["w"], torch.tensor([-0.05], dtype=torch.float64))
    torch.testing.assert_close(strategy.state_dict()["m.w"], torch.tensor([1.1], dtype=torch.float64))


# FedAdagrad, FedAdam, FedYogi (Reddi et al. 2021, Algorithm 2), against scalar references


def adagrad_v(v: float, d: float, beta_2: float) -> float:
    return v + d * d


def adam_v(v: float, d: float, beta_2: float) -> float:
    return beta_2 * v + (1 - beta_2) * d * d


def yogi_v(v: float, d: float, beta_2: float) -> float:
    return v - (1 - beta_2) * d * d * math.copysign(1.0, v - d * d) if v != d * d else v


def reference_steps(
    rule: Any, eta: float, beta_1: float, beta_2: float, tau: float, w: list[float], averages: list[list[float]]
) -> list[list[float]]:
    """The paper's server update, coordinate by coordinate in plain floats, m and v from zero."""
    w, m, v, out = list(w), [0.0] * len(w), [0.0] * len(w), []
    for avg in averages:
        for i in range(len(w)):
            d = avg[i] - w[i]
            m[i] = beta_1 * m[i] + (1 - beta_1) * d
            v[i] = rule(v[i], d, beta_2)
            w[i] += eta * m[i] / (math.sqrt(v[i]) + tau)
        out.append(list(w))
    return out


@pytest.mark.parametrize(
    "strategy, rule, beta_2",
    [
        (FedAdam(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3), adam_v, 0.99),
        (FedAdagrad(eta=0.1, beta_1=0.5, tau=1e-3), adagrad_v, 0.0),
        (FedYogi(eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-3), yogi_v, 0.99),
    ],
    ids=["FedAdam", "FedAdagrad", "FedYogi"],
)
def test_adaptive_strategies_follow_the_paper_for_two_rounds(strategy: Any, rule: Any, beta_2: float) -> None:
    w0 = [0.5, -1.0, 2.0, 0.0]
    # Round 1: the nodes' weighted mean is (1 * a + 3 * b) / 4; round 2 a single node.
    a, b = [1.0, -2.0, 2.0, 0.5], [0.0, 0.0, 2.0, -0.1]
    avg1 = [(x + 3 * y) / 4 for x, y in zip(a, b)]
    avg2 = [0.7, -0.5, 1.0, 0.3]
    expected = reference_steps(rule, strategy.eta, strategy.beta_1, beta_2, strategy.tau, w0, [avg1, avg2])

    f64 = torch.float64
    w1 = strategy.aggregate(
        1,
        {"w": torch.tensor(w0, dtype=f64)},
        [update("a", 1, w=torch.tensor(a, dtype=f64)), update("b", 3, w=torch.tensor(b, dtype=f64))],
    )
    torch.testing.assert_close(w1["w"], torch.tensor(expected[0], dtype=f64), rtol=1e-12, atol=1e-12)
    w2 = strategy.aggregate(2, w1, [update("a", 5, w=torch.tensor(avg2, dtype=f64))])
    torch.testing.assert_close(w2["w"], torch.tensor(expected[1], dtype=f64), rtol=1e-12, atol=1e-12)


def test_fedadam_first_step_in_closed_form() -> None:
    # From m = v = 0: w1 = w0 + eta * (1 - beta_1) * d / (sqrt(1 - beta_2) * |d| + tau).
    eta, beta_1, beta_2, tau, d = 0.1, 0.9, 0.99, 1e-9, 0.4
    out = FedAdam(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau).aggregate(
        1, {"w": torch.tensor([1.0], dtype=torch.float64)}, scalar_updates([1.0 + d])
    )
    expected = 1.0 + eta * (1 - beta_1) * d / (math.sqrt(1 - beta_2) * d + tau)
    assert out["w"].item() == pytest.approx(expected, rel=1e-12)


def test_adaptive_defaults_are_the_papers_and_flowers() -> None:
    assert {k: FedAdam().params()[k] for k in ("eta", "beta_1", "beta_2", "tau")} == {
        "eta": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-9,
    }
    assert {k: FedAdagrad().params()[k] for k in ("eta", "beta_1", "tau")} == {"eta": 0.1, "beta_1": 0.0, "tau": 1e-9}
    assert {k: FedYogi().params()[k] for k in ("eta", "beta_1", "beta_2", "tau")} == {
        "eta": 0.01,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-3,
    }


# FedMedian, FedTrimmedAvg, Krum


def test_fedmedian_odd_count_is_torch_median() -> None:
    values = [1.0, 5.0, 3.0, -2.0, 8.0]
    out = FedMedian().aggregate(1, {"w": torch.zeros(1, dtype=torch.float64)}, scalar_updates(values))
    assert out["w"].item() == torch.median(torch.tensor(values)).item() == 3.0


def test_fedmedian_even_count_is_the_mean_of_the_two_middle_values() -> None:
    values = [1.0, 10.0, 4.0, 2.0]
    out = FedMedian().aggregate(1, {"w": torch.zeros(1, dtype=torch.float64)}, scalar_updates(values, [1, 1, 1, 99]))
    assert out["w"].item() == np.median(values) == 3.0  # unweighted; torch.median would say 2 (the lower)
    updates = node_updates(n=4)
    out = FedMedian().aggregate(1, model(), updates)
    for k, v in out.items():
        column = torch.stack([u.weights[k] for u in updates]).double()
        torch.testing.assert_close(v, torch.quantile(column, 0.5, dim=0).float())


def test_fedtrimmedavg_with_beta_zero_is_the_unweighted_mean() -> None:
    updates = node_updates(torch.float64)
    out = FedTrimmedAvg(beta=0.0).aggregate(1, model(torch.float64), updates)
    for k, v in out.items():
        torch.testing.assert_close(v, torch.stack([u.weights[k] for u in updates]).mean(dim=0))


def test_fedtrimmedavg_drops_one_outlier_per_coordinate() -> None:
    # Five updates, beta 0.2: one value dropped from each end of each coordinate.
    rows = [[1.0, -1000.0], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0], [1000.0, 4.0]]
    updates = [update(f"n{i}", 1, w=torch.tensor(r, dtype=torch.float64)) for i, r in enumerate(rows)]
    out = FedTrimmedAvg(beta=0.2).aggregate(1, {"w": torch.zeros(2, dtype=torch.float64)}, updates)
    assert out["w"].tolist() == [3.0, 2.0]  # mean(2, 3, 4), mean(1, 2, 3)


def krum_updates() -> list[Update]:
    # Honest 0.9, 1.0, 1.05, 1.1 and a far outlier. With f = 1 each update is scored on its
    # n - f - 2 = 2 nearest: 1.05 scores 0.005, 1.0 and 1.1 0.0125, 0.9 0.0325, the outlier ~2e4.
    values = [1.0, 100.0, 0.9, 1.05, 1.1]
    return [
        update(f"n{i}", i + 1, w=torch.full((2, 2), v, dtype=torch.float64), b=torch.tensor(v, dtype=torch.float64))
        for i, v in enumerate(values)
    ]


def test_krum_picks_the_honest_update_closest_to_the_others() -> None:
    global_weights = {"w": torch.zeros(2, 2, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    out = Krum(num_malicious=1).aggregate(1, global_weights, krum_updates())
    assert torch.equal(out["w"], torch.full((2, 2), 1.05, dtype=torch.float64))
    assert out["b"].item() == 1.05


def test_multi_krum_averages_the_selected_by_examples() -> None:
    global_weights = {"w": torch.zeros(2, 2, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    out = Krum(num_malicious=1, num_selected=3).aggregate(1, global_weights, krum_updates())
    # 1.05 (4 examples), 1.0 (1) and 1.1 (5): the outlier and 0.9 are left out.
    expected = (4 * 1.05 + 1 * 1.0 + 5 * 1.1) / 10
    torch.testing.assert_close(out["w"], torch.full((2, 2), expected, dtype=torch.float64))
    assert out["b"].item() == pytest.approx(expected)


def test_krum_refuses_too_few_updates_naming_the_counts() -> None:
    global_weights = {"w": torch.zeros(2, 2, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    with pytest.raises(InvalidArgument, match=r"more than 4 updates.*got 4"):
        Krum(num_malicious=1).aggregate(1, global_weights, krum_updates()[:4])
    with pytest.raises(InvalidArgument, match=r"at least 6; got 5"):
        Krum(num_selected=6).aggregate(1, global_weights, krum_updates())


# Sampling


@pytest.mark.parametrize(
    "n, fraction, min_nodes, count",
    [(10, 0.3, 1, 3), (30, 0.1, 1, 3), (10, 0.05, 2, 2), (7, 1.0, 1, 7), (5, 0.5, 1, 3), (3, 0.1, 3, 3)],
)
def test_sample_takes_max_of_min_nodes_and_the_fraction(n: int, fraction: float, min_nodes: int, count: int) -> None:
    nodes = [f"node-{i}" for i in range(n)]
    chosen = FedAvg(fraction=fraction, min_nodes=min_nodes, seed=1).sample(nodes, 1)
    assert len(chosen) == count == max(min_nodes, math.ceil(round(fraction * n, 9)))
    assert chosen == [node for node in nodes if node in chosen]  # in the order given, no repeats


def test_sample_is_deterministic_per_seed_and_round_and_varies_across_rounds() -> None:
    a, b = FedAvg(fraction=0.3, seed=42), FedAvg(fraction=0.3, seed=42)
    assert [a.sample(NODES, r) for r in range(20)] == [b.sample(NODES, r) for r in range(20)]
    assert len({tuple(a.sample(NODES, r)) for r in range(20)}) > 10
    other = FedAvg(fraction=0.3, seed=43)
    assert [other.sample(NODES, r) for r in range(20)] != [a.sample(NODES, r) for r in range(20)]


def test_sample_without_a_seed_draws_one_and_keeps_it() -> None:
    strategy = FedAvg(fraction=0.5)
    assert isinstance(strategy.params()["seed"], int)
    rebuilt = strategy_from("FedAvg", json.loads(json.dumps(strategy.params())))
    assert [rebuilt.sample(NODES, r) for r in range(5)] == [strategy.sample(NODES, r) for r in range(5)]


def test_sample_refuses_fewer_nodes_than_min_nodes() -> None:
    with pytest.raises(InvalidArgument, match=r"at least 4 nodes.*but 3"):
        FedAvg(min_nodes=4).sample(NODES[:3], 1)


# Server state


STATEFUL = ["FedAvgM", "FedAdam", "FedAdagrad", "FedYogi"]


@pytest.mark.parametrize("name", STATEFUL)
def test_state_round_trip_gives_the_same_next_aggregate(name: str) -> None:
    original = instance(name, seed=3)
    w1 = original.aggregate(1, model(), node_updates())
    state = original.state_dict()
    assert set(state) == {f"{slot}.{k}" for slot in ("m", "v")[: 1 if name == "FedAvgM" else 2] for k in model()}

    resumed = strategy_from(name, json.loads(json.dumps(original.params())))
    resumed.load_state_dict(state)
    next_updates = node_updates(n=3)
    expected, got = original.aggregate(2, w1, next_updates), resumed.aggregate(2, w1, next_updates)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    fresh = instance(name).aggregate(2, w1, next_updates)
    assert not all(torch.equal(fresh[k], expected[k]) for k in expected)  # the state mattered


def test_state_dict_is_a_copy() -> None:
    strategy = FedAdam()
    strategy.aggregate(1, model(), node_updates())
    strategy.state_dict()["m.scale"].fill_(123.0)
    assert strategy.state_dict()["m.scale"].item() != 123.0


def test_bad_state_is_refused() -> None:
    assert FedAvg().state_dict() == {}
    FedAvg().load_state_dict({})
    with pytest.raises(InvalidArgument, match="keeps no state"):
        FedAvg().load_state_dict({"m.w": torch.zeros(1)})
    with pytest.raises(InvalidArgument, match="unknown state key 'x.w'"):
        FedAdam().load_state_dict({"x.w": torch.zeros(1)})
    with pytest.raises(InvalidArgument, match="same entries"):
        FedAdam().load_state_dict({"m.w": torch.zeros(1)})
    strategy = FedAdam()
    strategy.load_state_dict({"m.w": torch.zeros(1), "v.w": torch.zeros(1)})
    with pytest.raises(InvalidArgument, match="another model"):
        strategy.aggregate(1, model(), node_updates())


# Parameters, registry, repr


@pytest.mark.parametrize(
    "cls, params, word",
    [
        (FedAvg, {"fraction": 0.0}, "fraction"),
        (FedAvg, {"fraction": 1.5}, "fraction"),
        (FedAvg, {"fraction": float("nan")}, "fraction"),
        (FedAvg, {"fraction": True}, "fraction"),
        (FedAvg, {"min_nodes": 0}, "min_nodes"),
        (FedAvg, {"min_nodes": 2.0}, "min_nodes"),
        (FedAvg, {"seed": "seven"}, "seed"),
        (FedProx, {"mu": -0.1}, "mu"),
        (FedAvgM, {"server_lr": 0.0}, "server_lr"),
        (FedAvgM, {"momentum": 1.0}, "momentum"),
        (FedAdam, {"eta": 0.0}, "eta"),
        (FedAdam, {"beta_1": 1.0}, "beta_1"),
        (FedAdam, {"beta_2": -0.1}, "beta_2"),
        (FedYogi, {"tau": 0.0}, "tau"),
        (FedAdagrad, {"eta": float("inf")}, "eta"),
        (FedTrimmedAvg, {"beta": 0.5}, "beta"),
        (Krum, {"num_malicious": -1}, "num_malicious"),
        (Krum, {"num_selected": 0}, "num_selected"),
    ],
)
def test_bad_params_are_refused_saying_what_is_allowed(cls: type[Strategy], params: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidArgument, match=word) as info:
        cls(**{**({"mu": 0.1} if cls is FedProx else {}), **params})
    assert any(s in str(info.value) for s in ("in (", "in [", ">=", "int or None"))


def test_bad_updates_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="examples must be an int > 0"):
        update("a", 0, w=[1.0])
    with pytest.raises(InvalidArgument, match="at least one update"):
        FedAvg().aggregate(1, model(), [])
    with pytest.raises(InvalidArgument, match=r"missing \['scale'\]"):
        FedAvg().aggregate(1, model(), [update("a", 1, **{k: v for k, v in model().items() if k != "scale"})])
    with pytest.raises(InvalidArgument, match="layer.bias"):
        FedAvg().aggregate(1, model(), [update("a", 1, **{**model(), "layer.bias": torch.zeros(4)})])
    with pytest.raises(InvalidArgument, match="num_batches_tracked"):
        FedAvg().aggregate(1, {"n": torch.tensor(3)}, [update("a", 1, n=torch.tensor(3))])


def test_repr_shows_the_params() -> None:
    assert repr(FedAdam(eta=0.01, seed=7)) == (
        "FedAdam(eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-09, fraction=1.0, min_nodes=1, seed=7)"
    )
    assert (
        repr(Krum(num_malicious=2, seed=1))
        == "Krum(num_malicious=2, num_selected=1, fraction=1.0, min_nodes=1, seed=1)"
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_from_rebuilds_an_equal_strategy(name: str) -> None:
    strategy = instance(name, fraction=0.5, min_nodes=2)
    rebuilt = strategy_from(name, json.loads(json.dumps(strategy.params())))
    assert type(rebuilt) is type(strategy) and rebuilt.params() == strategy.params()
    assert repr(rebuilt) == repr(strategy)
    assert rebuilt.sample(NODES, 4) == strategy.sample(NODES, 4)


def test_strategy_from_refuses_unknown_names_and_params() -> None:
    assert set(STRATEGIES) == {
        "FedAvg",
        "FedProx",
        "FedAvgM",
        "FedAdam",
        "FedAdagrad",
        "FedYogi",
        "FedMedian",
        "FedTrimmedAvg",
        "Krum",
    }
    with pytest.raises(InvalidArgument, match="known: FedAvg"):
        strategy_from("FedSGD", {})
    with pytest.raises(InvalidArgument, match="unknown: beta_2"):
        strategy_from("FedAdagrad", {"beta_2": 0.9})


# Every strategy: inputs untouched, new tensors, dtypes and shapes kept


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_aggregate_keeps_dtypes_and_shapes_and_never_changes_its_inputs(name: str, dtype: torch.dtype) -> None:
    global_weights, updates = model(dtype), node_updates(dtype)
    before = (
        {k: v.clone() for k, v in global_weights.items()},
        [{k: v.clone() for k, v in u.weights.items()} for u in updates],
    )
    strategy = instance(name)
    for r in (1, 2):
        out = strategy.aggregate(r, global_weights, updates)
        assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
            k: (v.dtype, v.shape) for k, v in global_weights.items()
        }
        inputs = [t.data_ptr() for t in global_weights.values()] + [
            t.data_ptr() for u in updates for t in u.weights.values()
        ]
        assert not {t.data_ptr() for t in out.values()} & set(inputs)
        assert all(torch.isfinite(v).all() for v in out.values())
    assert all(torch.equal(global_weights[k], v) for k, v in before[0].items())
    assert all(torch.equal(u.weights[k], v) for u, w in zip(updates, before[1]) for k, v in w.items())
