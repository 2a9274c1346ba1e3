"""FedAdagrad: Adagrad on the server, over the nodes' pseudo-gradient."""

from __future__ import annotations

import torch

from .fedopt import FedOpt


class FedAdagrad(FedOpt):
    """Adaptive federated optimisation with Adagrad's ``v = v + delta**2``.

    Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR). ``beta_1`` defaults to 0,
    Flower's fixed value (``m`` is this round's pseudo-gradient); the paper allows momentum.

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

    def __init__(
        self,
        *,
        eta: float = 1e-1,
        beta_1: float = 0.0,
        tau: float = 1e-9,
        fraction: float = 1.0,
        min_nodes: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, tau=tau, fraction=fraction, min_nodes=min_nodes, seed=seed)

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Adagrad: the sum of squared pseudo-gradients."""
        return v + delta**2
