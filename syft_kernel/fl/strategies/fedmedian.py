"""FedMedian: the coordinate-wise median of the nodes' weights, robust to a minority of outliers."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Strategy, Update, Weights, cast_like, check_updates, stacked


class FedMedian(Strategy):
    """Each coordinate of the next model is the median of that coordinate over the updates.

    Unweighted; for an even count, the mean of the two middle values (as ``numpy.median``, not
    ``torch.median``'s lower one). Yin et al. 2018, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates" (ICML).
    """

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """The coordinate-wise median of the updates."""
        check_updates(global_weights, updates)
        n = len(updates)
        median = {}
        for name in global_weights:
            ordered = stacked(updates, name).sort(dim=0).values
            median[name] = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        return cast_like(median, global_weights)
