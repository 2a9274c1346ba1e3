"""FedAvgM: FedAvg's average taken as a pseudo-gradient step with server momentum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Strategy, Update, Weights, cast_like, check_updates, f64, number, weighted_average


class FedAvgM(Strategy):
    """Federated averaging with server momentum, steadier when nodes' data differ.

    With the pseudo-gradient ``g = w_global - weighted_avg(w_i)``: ``m = momentum * m + g`` and
    ``w = w_global - server_lr * m`` (``m`` starts at zero). Hsu et al. 2019, "Measuring the
    Effects of Non-Identical Data Distribution for Federated Visual Classification".

    Parameters
    ----------
    server_lr : float
        Server learning rate (> 0); 1 with momentum 0 is FedAvg.
    momentum : float
        Server momentum in [0, 1). (Flower's FedAvgM defaults to 0.)
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    _slots = ("m",)

    def __init__(
        self,
        *,
        server_lr: float = 1.0,
        momentum: float = 0.9,
        fraction: float = 1.0,
        min_nodes: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(fraction=fraction, min_nodes=min_nodes, seed=seed)
        self.server_lr = number(self, "server_lr", server_lr, "(0, inf)")
        self.momentum = number(self, "momentum", momentum, "[0, 1)")

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """One momentum step from ``global_weights`` along the updates' mean; keeps the momentum."""
        check_updates(global_weights, updates)
        momentum = self._moments(global_weights)["m"]
        average = weighted_average(updates, list(global_weights))
        new_m, new_w = {}, {}
        for name, tensor in global_weights.items():
            new_m[name] = self.momentum * momentum[name] + (f64(tensor) - average[name])
            new_w[name] = f64(tensor) - self.server_lr * new_m[name]
        self._state = {"m": new_m}
        return cast_like(new_w, global_weights)

    def params(self) -> dict[str, Any]:
        """``server_lr``, ``momentum`` and the base parameters."""
        return {"server_lr": self.server_lr, "momentum": self.momentum, **super().params()}
