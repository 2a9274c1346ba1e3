"""FedAvg: the next global model is the nodes' weights averaged by their training examples."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Strategy, Update, Weights, cast_like, check_updates, weighted_average


class FedAvg(Strategy):
    """Federated averaging: the mean of the updates weighted by examples.

    McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized
    Data" (AISTATS).
    """

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """The examples-weighted mean of the updates."""
        check_updates(global_weights, updates)
        return cast_like(weighted_average(updates, list(global_weights)), global_weights)
