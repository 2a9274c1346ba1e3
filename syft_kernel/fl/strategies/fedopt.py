"""Adaptive federated optimisation: the nodes' mean taken as a pseudo-gradient for a server optimiser."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch

from .base import Strategy, Update, Weights, cast_like, check_updates, f64, number, weighted_average


class FedOpt(Strategy):
    """Base of FedAdagrad, FedAdam and FedYogi: a server optimiser on the pseudo-gradient.

    With ``delta = weighted_avg(w_i) - w_global``: ``m = beta_1 * m + (1 - beta_1) * delta``,
    ``v`` by the subclass's rule, and ``w = w_global + eta * m / (sqrt(v) + tau)``; ``m`` and
    ``v`` start at zero, as in Flower, and have no bias correction, as in the paper (Flower's
    FedAdam adds one). Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR), Algorithm 2.

    Parameters
    ----------
    eta : float
        Server learning rate (> 0).
    beta_1 : float
        Decay of the first moment, in [0, 1).
    tau : float
        Adaptivity: the smallest denominator (> 0).
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    _slots = ("m", "v")

    def __init__(
        self, *, eta: float, beta_1: float, tau: float, fraction: float, min_nodes: int, seed: int | None
    ) -> None:
        super().__init__(fraction=fraction, min_nodes=min_nodes, seed=seed)
        self.eta = number(self, "eta", eta, "(0, inf)")
        self.beta_1 = number(self, "beta_1", beta_1, "[0, 1)")
        self.tau = number(self, "tau", tau, "(0, inf)")

    @abc.abstractmethod
    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The next ``v`` from the last one and this round's pseudo-gradient."""

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """One server optimiser step from ``global_weights``; keeps ``m`` and ``v`` for the next round."""
        check_updates(global_weights, updates)
        state = self._moments(global_weights)
        average = weighted_average(updates, list(global_weights))
        new_m, new_v, new_w = {}, {}, {}
        for name, tensor in global_weights.items():
            delta = average[name] - f64(tensor)
            new_m[name] = self.beta_1 * state["m"][name] + (1 - self.beta_1) * delta
            new_v[name] = self.second_moment(state["v"][name], delta)
            new_w[name] = f64(tensor) + self.eta * new_m[name] / (new_v[name].sqrt() + self.tau)
        self._state = {"m": new_m, "v": new_v}
        return cast_like(new_w, global_weights)

    def params(self) -> dict[str, Any]:
        """``eta``, ``beta_1``, ``tau`` and the base parameters."""
        return {"eta": self.eta, "beta_1": self.beta_1, "tau": self.tau, **super().params()}
