"""Federated learning: train any torch model across data nodes; only its updates leave them.

``sk.fl.Job(model, data={node: pointer}, target=…, strategy=sk.fl.FedAvg(), …)``, then
``run_on_mock()``, ``request(reason=…)``, ``run()``, ``model`` and ``history``.
"""

from __future__ import annotations

from .job import Job, check_update
from .live import plot_metrics
from .optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .strategies import (
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

__all__ = [
    "STRATEGIES",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Job",
    "Krum",
    "Optimizer",
    "RMSprop",
    "Strategy",
    "Update",
    "check_update",
    "plot_metrics",
    "strategy_from",
]
