"""Krum: keep the updates closest to their neighbours, so that a few arbitrary (Byzantine) ones are left out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...core.errors import InvalidArgument
from .base import Strategy, Update, Weights, cast_like, check_updates, stacked, weighted_average


class Krum(Strategy):
    """(Multi-)Krum: select the updates with the smallest sum of squared distances to their neighbours.

    An update's score sums its squared distances (over all entries) to its ``n - f - 2`` nearest
    others; the ``num_selected`` lowest-scored are kept and averaged by examples. Needs
    ``n > 2f + 2`` updates. Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent" (NeurIPS).

    Parameters
    ----------
    num_malicious : int
        ``f``, the Byzantine updates to tolerate (>= 0).
    num_selected : int
        Updates kept (>= 1): 1 is Krum, more is multi-Krum.
    fraction, min_nodes, seed
        As for ``Strategy``.
    """

    def __init__(
        self,
        *,
        num_malicious: int = 0,
        num_selected: int = 1,
        fraction: float = 1.0,
        min_nodes: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(fraction=fraction, min_nodes=min_nodes, seed=seed)
        for name, value, least in (("num_malicious", num_malicious, 0), ("num_selected", num_selected, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidArgument(f"Krum: {name} must be an int >= {least}, got {value!r}")
        self.num_malicious = num_malicious
        self.num_selected = num_selected

    def aggregate(self, round: int, global_weights: Weights, updates: Sequence[Update]) -> Weights:
        """The examples-weighted mean of the ``num_selected`` updates with the lowest Krum scores."""
        check_updates(global_weights, updates)
        n, f = len(updates), self.num_malicious
        if n <= 2 * f + 2 or n < self.num_selected:
            raise InvalidArgument(
                f"Krum with num_malicious={f} and num_selected={self.num_selected} needs more than "
                f"{2 * f + 2} updates and at least {self.num_selected}; got {n}"
            )
        distances = torch.zeros(n, n, dtype=torch.float64)
        for name in global_weights:
            flat = stacked(updates, name).reshape(n, -1)
            distances += torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        # Each row sorted: its first value is the distance to itself (0), then the nearest others.
        scores = distances.sort(dim=1).values[:, 1 : n - f - 1].sum(dim=1)
        chosen = scores.argsort(stable=True)[: self.num_selected].tolist()
        return cast_like(weighted_average([updates[i] for i in chosen], list(global_weights)), global_weights)

    def params(self) -> dict[str, Any]:
        """``num_malicious``, ``num_selected`` and the base parameters."""
        return {"num_malicious": self.num_malicious, "num_selected": self.num_selected, **super().params()}
