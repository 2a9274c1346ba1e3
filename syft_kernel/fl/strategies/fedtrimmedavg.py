"""FedTrimmedAvg: per coordinate, the mean of the nodes' values without the largest and smallest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Strategy, Update, Weights, cast_like, check_updates, number, stacked


class FedTrimmedAvg(Strategy):
    """Coordinate-wise trimmed mean: drop the ``beta`` share of largest and of smallest values, average the rest.

    Per coordinate, ``int(beta * n)`` values go from each end (as ``scipy.stats.trim_mean``);
    the rest are averaged unweighted. Yin et al. 2018, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates" (ICML).

    Parameters
    ----------
    beta : float
        Share trimmed from each end, in [0, 0.5); 0 is the unweighted mean.
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    def __init__(
        self, *, beta: float = 0.2, fraction: float = 1.0, min_nodes: int = 1, seed: int | None = None
    ) -> None:
        super().__init__(fraction=fraction, min_nodes=min_nodes, seed=seed)
        self.beta = number(self, "beta", beta, "[0, 0.5)")

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """The coordinate-wise trimmed mean of the updates."""
        check_updates(global_weights, updates)
        cut = int(self.beta * len(updates))
        kept = slice(cut, len(updates) - cut)
        mean = {name: stacked(updates, name).sort(dim=0).values[kept].mean(dim=0) for name in global_weights}
        return cast_like(mean, global_weights)

    def params(self) -> dict[str, Any]:
        """``beta`` and the base parameters."""
        return {"beta": self.beta, **super().params()}
