"""FedYogi: Yogi on the server, over the nodes' pseudo-gradient."""

from __future__ import annotations

from typing import Any

import torch

from .base import number
from .fedopt import FedOpt


class FedYogi(FedOpt):
    """Adaptive federated optimisation with Yogi's ``v = v - (1 - beta_2) * delta**2 * sign(v - delta**2)``.

    Yogi's ``v`` grows more slowly than Adam's, which the paper finds steadier. Reddi et al.
    2021, "Adaptive Federated Optimization" (ICLR).

    Parameters
    ----------
    eta : float
        Server learning rate (> 0).
    beta_1, beta_2 : float
        Decays of the first and second moments, in [0, 1).
    tau : float
        Adaptivity: the smallest denominator (> 0).
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    def __init__(
        self,
        *,
        eta: float = 1e-2,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        fraction: float = 1.0,
        min_nodes: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, tau=tau, fraction=fraction, min_nodes=min_nodes, seed=seed)
        self.beta_2 = number(self, "beta_2", beta_2, "[0, 1)")

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Yogi: ``v`` moves towards ``delta**2`` by at most ``(1 - beta_2) * delta**2``."""
        square = delta**2
        return v - (1 - self.beta_2) * square * torch.sign(v - square)

    def params(self) -> dict[str, Any]:
        """``eta``, ``beta_1``, ``beta_2``, ``tau`` and the base parameters."""
        return {"eta": self.eta, "beta_1": self.beta_1, "beta_2": self.beta_2, **super().params()}
