"""FedProx: FedAvg whose nodes keep their local model near the global one with a proximal term."""

from __future__ import annotations

from typing import Any

from .base import number
from .fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg plus a proximal term ``mu / 2 * ||w - w_global||^2`` in each node's local loss.

    The term limits how far heterogeneous nodes drift from the global model; aggregation is
    FedAvg's. Li et al. 2020, "Federated Optimization in Heterogeneous Networks" (MLSys).

    Parameters
    ----------
    mu : float
        Weight of the proximal term (>= 0; 0 is FedAvg). The paper tries 0.001 to 1.
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    def __init__(self, *, mu: float, fraction: float = 1.0, min_nodes: int = 1, seed: int | None = None) -> None:
        super().__init__(fraction=fraction, min_nodes=min_nodes, seed=seed)
        self.mu = number(self, "mu", mu, "[0, inf)")

    def fit_config(self) -> dict[str, float]:
        """``{"proximal_mu": mu}``: the node adds ``mu / 2 * ||w - w_global||^2`` to its loss."""
        return {"proximal_mu": self.mu}

    def params(self) -> dict[str, Any]:
        """``mu`` and the base parameters."""
        return {"mu": self.mu, **super().params()}
