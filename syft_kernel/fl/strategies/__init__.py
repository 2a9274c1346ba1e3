"""Aggregation strategies for federated learning: sampling nodes and combining their updates.

``strategy_from(name, params)`` rebuilds a strategy from its class name and ``params()``, as a
checkpoint stores it.
"""

from __future__ import annotations

from typing import Any

from ...core.errors import InvalidArgument
from .base import Strategy, Update, Weights
from .fedadagrad import FedAdagrad
from .fedadam import FedAdam
from .fedavg import FedAvg
from .fedavgm import FedAvgM
from .fedmedian import FedMedian
from .fedopt import FedOpt
from .fedprox import FedProx
from .fedtrimmedavg import FedTrimmedAvg
from .fedyogi import FedYogi
from .krum import Krum

__all__ = [
    "STRATEGIES",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedOpt",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "Strategy",
    "Update",
    "Weights",
    "strategy_from",
]

STRATEGIES: dict[str, type[Strategy]] = {
    cls.__name__: cls
    for cls in (FedAvg, FedProx, FedAvgM, FedAdam, FedAdagrad, FedYogi, FedMedian, FedTrimmedAvg, Krum)
}
"""The strategies by class name, as ``strategy_from`` knows them."""


def strategy_from(name: str, params: dict[str, Any]) -> Strategy:
    """The strategy called ``name`` (a key of ``STRATEGIES``) built from ``params``, as ``params()`` gave them."""
    if name not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name].from_params(params)
